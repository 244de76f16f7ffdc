"""Laboratories and lab groups. Names and addresses of labs are public, not patient data."""

from django.db import models


class LabGroup(models.Model):
    name = models.CharField(max_length=200, unique=True)

    def __str__(self) -> str:
        return self.name


class Lab(models.Model):
    finess = models.CharField(max_length=9, unique=True)
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True)
    group = models.ForeignKey(LabGroup, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.finess})"
