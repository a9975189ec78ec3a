/* The recording studio: in-page recording where the browser allows the microphone (https or
   this computer), and "Listen to the whole circle" (each prompt's sound, in order). Without
   this script the page still works: the file input opens the phone's own recorder. Words come
   from the page (data-* attributes), so they are in the page's language. */
(function () {
  "use strict";
  var list = document.getElementById("prompts");
  if (!list) return;
  var words = list.dataset;

  function wavBlob(chunks, rate) {
    var n = chunks.reduce(function (a, c) { return a + c.length; }, 0);
    var buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf), o = 0;
    function str(s) { for (var i = 0; i < s.length; i++) v.setUint8(o++, s.charCodeAt(i)); }
    function u32(x) { v.setUint32(o, x, true); o += 4; }
    function u16(x) { v.setUint16(o, x, true); o += 2; }
    str("RIFF"); u32(36 + 2 * n); str("WAVE"); str("fmt "); u32(16); u16(1); u16(1);
    u32(rate); u32(2 * rate); u16(2); u16(16); str("data"); u32(2 * n);
    chunks.forEach(function (c) {
      for (var i = 0; i < c.length; i++) {
        var s = Math.max(-1, Math.min(1, c[i]));
        v.setInt16(o, s < 0 ? s * 32768 : s * 32767, true); o += 2;
      }
    });
    return new Blob([buf], {type: "audio/wav"});
  }

  var canRecord = window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia
    && window.DataTransfer;
  if (canRecord) {
    list.querySelectorAll(".recorder").forEach(function (r) { r.hidden = false; });
    list.addEventListener("click", function (ev) {
      var btn = ev.target.closest("button[data-record]");
      if (!btn) return;
      var form = btn.closest("form"), state = form.querySelector("[data-record-state]");
      if (btn._stop) { btn._stop(); return; }
      navigator.mediaDevices.getUserMedia({audio: true}).then(function (stream) {
        var ctx = new (window.AudioContext || window.webkitAudioContext)();
        var src = ctx.createMediaStreamSource(stream), node = ctx.createScriptProcessor(4096, 1, 1);
        var chunks = [];
        node.onaudioprocess = function (e) { chunks.push(new Float32Array(e.inputBuffer.getChannelData(0))); };
        src.connect(node); node.connect(ctx.destination);
        btn.textContent = words.stop; state.textContent = words.recording;
        btn._stop = function () {
          btn._stop = null;
          node.disconnect(); src.disconnect();
          stream.getTracks().forEach(function (t) { t.stop(); });
          var file = new File([wavBlob(chunks, ctx.sampleRate)], "take.wav", {type: "audio/wav"});
          ctx.close();
          var dt = new DataTransfer(); dt.items.add(file);
          form.querySelector("input[data-take]").files = dt.files;
          btn.textContent = words.again; state.textContent = words.ready;
        };
      }).catch(function () { state.textContent = words.denied; });
    });
  }

  var all = document.getElementById("play-all");
  if (all) {
    all.addEventListener("click", function () {
      var sounds = Array.prototype.slice.call(list.querySelectorAll("audio.take"));
      var i = 0;
      function next() {
        if (i >= sounds.length) return;
        var a = sounds[i++];
        a.scrollIntoView({block: "center"});
        a.onended = next;
        a.onerror = next;
        a.play().catch(next);
      }
      next();
    });
  }
})();
