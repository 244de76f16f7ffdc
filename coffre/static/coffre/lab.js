// Result entry grid: Enter moves to the next value (as Tab does), like a bench
// spreadsheet; on the last value it goes to the "Enregistrer" button. Ctrl+Enter saves.
(function () {
  "use strict";
  var grid = document.getElementById("entry-grid");
  if (!grid) { return; }
  var inputs = Array.prototype.slice.call(grid.querySelectorAll("input.grid-input"));
  grid.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !event.target.classList.contains("grid-input")) { return; }
    if (event.ctrlKey || event.metaKey) { return; } // Ctrl+Enter submits the form
    event.preventDefault();
    var index = inputs.indexOf(event.target);
    var next = inputs[index + (event.shiftKey ? -1 : 1)];
    if (next) {
      next.focus();
      next.select();
    } else {
      grid.querySelector("button[type=submit]").focus();
    }
  });
  inputs.forEach(function (input) {
    input.addEventListener("focus", function () {
      var row = input.closest("tr");
      if (row) { row.classList.add("current"); }
    });
    input.addEventListener("blur", function () {
      var row = input.closest("tr");
      if (row) { row.classList.remove("current"); }
    });
  });
}());
