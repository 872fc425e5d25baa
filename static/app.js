// Progressive enhancement only: every page works without this file.
"use strict";

// Copy buttons: copy the text of the element named by data-copy.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  if (!navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    var source = document.getElementById(button.dataset.copy);
    if (!source) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });
});

// Irreversible actions ask first.
document.querySelectorAll("[data-confirm]").forEach(function (el) {
  el.addEventListener("click", function (event) {
    if (!window.confirm(el.dataset.confirm)) event.preventDefault();
  });
});

// Live status of a running dump: poll its JSON status, update the page, and
// reload it once the dump has finished so every field is shown.
(function () {
  var status = document.getElementById("status");
  if (!status || status.dataset.running !== "1" || !status.dataset.poll) return;
  var progress = document.getElementById("progress");
  function poll() {
    fetch(status.dataset.poll, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        status.textContent = s.status;
        status.className = "status status-" + s.status;
        if (progress) progress.textContent = s.progress;
        if (s.running) setTimeout(poll, 1000); else window.location.reload();
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
