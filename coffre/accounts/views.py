from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from coffre.accounts.acting import SESSION_LAB, memberships


@login_required
@require_http_methods(["GET", "POST"])
def choose_lab(request: HttpRequest) -> HttpResponse:
    mine = memberships(request.user)
    if request.method == "POST":
        chosen = request.POST.get("lab")
        if any(str(m.lab_id) == chosen for m in mine):
            request.session[SESSION_LAB] = int(chosen)
            return redirect("home")
    return render(request, "accounts/choose_lab.html", {"memberships": mine})
