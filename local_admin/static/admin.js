/* Circlebox admin: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";
  function csrfToken() {
    var el = document.querySelector("input[name=csrf_token]");
    return el ? el.value : "";
  }
  function fetchJSON(url, options) {
    options = options || {};
    options.headers = Object.assign({"X-CSRFToken": csrfToken(), "Accept": "application/json"},
                                    options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (r) {
      return r.json().then(function (data) { data._status = r.status; return data; });
    });
  }

  /* Live status: the panel, the button view and the microphone meter. */
  function applyStatus(s) {
    var notRunning = document.getElementById("not-running");
    var status = document.getElementById("status");
    if (notRunning) notRunning.hidden = !!s.running;
    if (status) status.hidden = !s.running;
    document.querySelectorAll("[data-status]").forEach(function (el) {
      var v = s[el.getAttribute("data-status")];
      el.textContent = (v === null || v === undefined || v === "") ? "-" :
        (typeof v === "number" ? String(Math.round(v * 10) / 10) : String(v));
    });
    document.querySelectorAll("[data-status-meter]").forEach(function (el) {
      var v = s[el.getAttribute("data-status-meter")];
      el.value = typeof v === "number" ? v : el.min;
    });
    document.querySelectorAll("[data-status-flag]").forEach(function (el) {
      el.classList.toggle("on", !!s[el.getAttribute("data-status-flag")]);
    });
  }
  var live = document.getElementById("live");
  if (live && live.dataset.statusUrl) {
    var poll = function () {
      fetchJSON(live.dataset.statusUrl).then(applyStatus).catch(function () {});
    };
    poll();
    setInterval(poll, 1000);
    document.querySelectorAll("form.press").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var action = form.elements.action.value;
        fetchJSON(form.action, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify({action: action})})
          .then(function (data) { if (data.status) applyStatus(data.status); })
          .catch(function () { form.submit(); });
      });
    });
  }

  /* Editor: kind switch shows its fields; Listen plays without reloading the page. */
  document.querySelectorAll(".kind-select").forEach(function (sel) {
    sel.addEventListener("change", function () {
      sel.closest(".step").setAttribute("data-kind", sel.value);
    });
  });
  var editor = document.getElementById("editor");
  if (editor) {
    editor.addEventListener("click", function (ev) {
      var btn = ev.target.closest("button[data-listen]");
      if (!btn) return;
      ev.preventDefault();
      var i = btn.getAttribute("data-listen");
      var out = document.getElementById("listen-" + i);
      out.textContent = "Making the sound…";
      btn.disabled = true;
      var data = new FormData(editor);
      data.delete("op");
      fetchJSON(editor.dataset.listenUrl + "?step=" + i, {method: "POST", body: data})
        .then(function (res) {
          out.textContent = "";
          if (res.url) {
            var audio = document.createElement("audio");
            audio.controls = true; audio.id = "audio-" + i; audio.src = res.url;
            out.appendChild(audio);
            audio.play().catch(function () {});
          } else {
            var err = document.createElement("span");
            err.className = "field-error"; err.textContent = res.error || "could not make the sound";
            out.appendChild(err);
          }
        })
        .catch(function () { out.textContent = "The box did not answer."; })
        .then(function () { btn.disabled = false; });
    });
  }

  /* Save progress. */
  var job = document.getElementById("job");
  if (job && job.dataset.jobUrl) {
    var words = {queued: "waiting", running: "making the sounds", done: "done", failed: "failed"};
    var tick = function () {
      fetchJSON(job.dataset.jobUrl).then(function (j) {
        document.getElementById("job-progress").value = j.percent;
        document.getElementById("job-percent").textContent = j.percent + "%";
        document.getElementById("job-state").textContent = words[j.state] || j.state;
        document.getElementById("job-count").textContent = j.total ? "(" + j.done + " of " + j.total + ")" : "";
        var msg = document.getElementById("job-message");
        if (j.state === "done" || j.state === "failed") {
          msg.textContent = j.message + (j.state === "failed" ? " Your changes are kept as a draft in the editor." : "");
          msg.className = "flash " + (j.state === "done" ? "ok" : "error");
        } else {
          setTimeout(tick, 400);
        }
      }).catch(function () { setTimeout(tick, 1500); });
    };
    tick();
  }
})();
