/* Circlebox admin: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";
  /* The page's words in its language (base.html's JSON block); English if it is missing. */
  var words = {};
  try { words = JSON.parse(document.getElementById("page-words").textContent); } catch (e) { words = {}; }
  function say_(key, english, fill) {
    var text = words[key] || english;
    Object.keys(fill || {}).forEach(function (k) { text = text.split("{" + k + "}").join(fill[k]); });
    return text;
  }
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
  function show(el, on) { if (el) el.hidden = !on; }
  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  function renderProblems(list) {
    /* The same markup as the problem_list macro: plain words, detail behind a toggle. */
    var ul = document.getElementById("problems");
    if (!ul) return;
    var key = JSON.stringify(list || []);
    if (ul.getAttribute("data-key") === key) return;  /* keep an opened toggle open */
    ul.setAttribute("data-key", key);
    ul.textContent = "";
    (list || []).forEach(function (p) {
      var li = document.createElement("li");
      var strong = document.createElement("strong");
      strong.textContent = p.summary;
      var advice = document.createElement("span");
      advice.className = "advice";
      advice.textContent = p.advice;
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = say_("detail", "Technical detail");
      var pre = document.createElement("pre");
      pre.textContent = p.detail;
      details.appendChild(summary);
      details.appendChild(pre);
      li.appendChild(strong);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(advice);
      li.appendChild(details);
      ul.appendChild(li);
    });
    show(ul, (list || []).length > 0);
  }
  function renderCountdown(c) {
    var box = document.getElementById("countdown");
    if (!box) return;
    show(box, !!c);
    if (!c) return;
    box.classList.toggle("over", !!c.over);
    setText("countdown-label", c.label);
    setText("countdown-remaining", c.remaining);
    setText("countdown-rest", c.rest);
    var bar = document.getElementById("countdown-bar");
    if (bar) bar.value = c.pct;
    var note = document.getElementById("countdown-note");
    if (note) {
      note.textContent = c.note || "";
      show(note, !!c.note);
    }
  }
  var volumeBusy = false;  /* the facilitator is moving the slider: do not move it under them */
  function renderVolume(s) {
    var slider = document.getElementById("volume");
    if (!slider || volumeBusy || typeof s.volume_pct !== "number") return;
    if (typeof s.volume_cap_pct === "number") slider.max = s.volume_cap_pct;
    slider.value = s.volume_pct;
    setText("volume-out", s.volume_pct + "%");
  }
  function renderClock(s, live) {
    var box = document.getElementById("clock-box");
    if (!box) return;
    if (!s.running) { show(box, false); return; }
    var drift = Number(live.dataset.clockDriftS || 120) * 1000;
    var c = s.clock;
    var why;
    if (!c) why = say_("clock_unknown", "the box does not say what time it has");
    else if (!c.trusted) why = say_("clock_unset", "the box's clock has not been set since it was switched on (it says {time})", {time: c.text});
    else if (Math.abs(c.epoch * 1000 - Date.now()) > drift) why = say_("clock_other", "the box's clock says {time}, which is not this phone's time", {time: c.text});
    show(box, !!why);
    if (why) setText("clock-why", say_("clock_why", "The dates in Usage may be wrong: {why}.", {why: why}));
  }
  function applyStatus(s) {
    var notRunning = document.getElementById("not-running");
    var status = document.getElementById("status");
    if (notRunning) notRunning.hidden = !!s.running;
    if (status) status.hidden = !s.running;
    document.querySelectorAll("[data-status]").forEach(function (el) {
      var v = s[el.getAttribute("data-status")];
      var none = el.classList.contains("note") ? "" : "-";  // no sentence: nothing to read
      el.textContent = (v === null || v === undefined || v === "") ? none :
        (typeof v === "number" ? String(Math.round(v * 10) / 10) : String(v));
    });
    document.querySelectorAll("[data-status-meter]").forEach(function (el) {
      var v = s[el.getAttribute("data-status-meter")];
      el.value = typeof v === "number" ? v : el.min;
    });
    document.querySelectorAll("[data-status-flag]").forEach(function (el) {
      el.classList.toggle("on", !!s[el.getAttribute("data-status-flag")]);
    });
    if (live) {
      renderProblems(s.problems);
      renderCountdown(s.countdown);
      renderVolume(s);
      renderClock(s, live);
    }
  }
  var live = document.getElementById("live");
  if (live && live.dataset.statusUrl) {
    var message = document.getElementById("panel-message");
    var say = function (text, kind) {
      if (!message) return;
      message.textContent = text || "";
      message.className = "flash " + (kind || "error");
      show(message, !!text);
    };
    var poll = function () {
      fetchJSON(live.dataset.statusUrl).then(applyStatus).catch(function () {});
    };
    poll();
    setInterval(poll, 1000);
    /* Every press goes as JSON to /panel/press; the page never reloads. */
    var send = function (action, confirmed, url) {
      var body = {action: action};
      if (confirmed) body.confirm = true;
      return fetchJSON(url || live.dataset.pressUrl, {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify(body)})
        .then(function (data) {
          if (data._status === 409 && data.confirm) { askStop(); return; }
          if (data.error) say(data.error); else say("");
          if (data.status) applyStatus(data.status);
        })
        .catch(function () { say(say_("no_answer", "The box did not answer. Check the connection and try again.")); });
    };
    var ask = document.getElementById("stop-confirm");
    var askStop = function () {
      show(ask, true);
      var yes = document.getElementById("stop-yes");
      if (yes) yes.focus();
    };
    if (ask) {
      document.getElementById("stop-yes").addEventListener("click", function () {
        show(ask, false);
        send("stop", true);
      });
      document.getElementById("stop-no").addEventListener("click", function () { show(ask, false); });
    }
    document.querySelectorAll("form.press").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        /* getAttribute, never form.action: an <input name="action"> shadows that property */
        var action = form.elements.namedItem("action").value;
        if (action === "stop") { askStop(); return; }
        send(action, false, form.getAttribute("action"));
      });
    });
    var slider = document.getElementById("volume");
    var volumeForm = document.getElementById("volume-form");
    if (slider && volumeForm) {
      var sendVolume = function () {
        volumeBusy = false;
        send("volume:" + slider.value, false);
      };
      slider.addEventListener("input", function () {
        volumeBusy = true;
        setText("volume-out", slider.value + "%");
      });
      slider.addEventListener("change", sendVolume);
      volumeForm.addEventListener("submit", function (ev) { ev.preventDefault(); sendVolume(); });
    }
    var clockButton = document.getElementById("clock-set");
    if (clockButton && live.dataset.clockUrl) {
      clockButton.addEventListener("click", function () {
        clockButton.disabled = true;
        fetchJSON(live.dataset.clockUrl, {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({epoch_ms: Date.now()})})
          .then(function (data) {
            if (data.error) { say(data.error); return; }
            say(say_("clock_set", "The box's clock is set to this phone's time."), "ok");
            if (data.status) applyStatus(data.status);
          })
          .catch(function () { say(say_("no_answer", "The box did not answer. Check the connection and try again.")); })
          .then(function () { clockButton.disabled = false; });
      });
    }
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
      out.textContent = say_("making", "Making the sound…");
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
            err.className = "field-error"; err.textContent = res.error || say_("sound_failed", "could not make the sound");
            out.appendChild(err);
          }
        })
        .catch(function () { out.textContent = say_("box_silent", "The box did not answer."); })
        .then(function () { btn.disabled = false; });
    });
  }

  /* Save progress. */
  var job = document.getElementById("job");
  if (job && job.dataset.jobUrl) {
    var states = {queued: say_("job_queued", "waiting"), running: say_("job_running", "making the sounds"),
                  done: say_("job_done", "done"), failed: say_("job_failed", "failed")};
    var tick = function () {
      fetchJSON(job.dataset.jobUrl).then(function (j) {
        document.getElementById("job-progress").value = j.percent;
        document.getElementById("job-percent").textContent = j.percent + "%";
        document.getElementById("job-state").textContent = states[j.state] || j.state;
        document.getElementById("job-count").textContent = j.total ? say_("job_count", "({done} of {total})", {done: j.done, total: j.total}) : "";
        var msg = document.getElementById("job-message");
        if (j.state === "done" || j.state === "failed") {
          msg.textContent = j.message + (j.state === "failed" ? " " + say_("draft_kept", "Your changes are kept as a draft in the editor.") : "");
          msg.className = "flash " + (j.state === "done" ? "ok" : "error");
        } else {
          setTimeout(tick, 400);
        }
      }).catch(function () { setTimeout(tick, 1500); });
    };
    tick();
  }
})();
