// The scan station: sends each scan to POST /api/v1/scans/ and shows its verdict at once.
//
// A keyboard-wedge scanner types the code and presses Enter, so the code field keeps the focus
// and scans are queued: a fast scanner never loses a code while the previous answer is on its
// way. Each scan carries its own scan_id, so a retry after a lost connection gets the first
// answer back instead of acting twice. Everything shown comes from the server's answer and is
// written with textContent only.
(function () {
  "use strict";

  var root = document.getElementById("scan-station");
  if (!root) return;

  var form = document.getElementById("scan-form");
  var codeInput = document.getElementById("scan-code");
  var actionSelect = document.getElementById("scan-action");
  var locationSelect = document.getElementById("scan-location");
  var referenceInput = document.getElementById("scan-reference");
  var quantityInput = document.getElementById("scan-quantity");
  var decommissionBox = document.getElementById("scan-decommission-box");
  var decommissionInput = document.getElementById("scan-decommission");
  var photoInput = document.getElementById("scan-photo");
  var verdict = document.getElementById("verdict");
  var log = document.getElementById("scan-log");
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  var LOG_LIMIT = 30;
  // What FNC1 looks like when typed by hand: the visible picture of GS, which the parser reads.
  var GS_PICTURE = "\u241d";
  var ACTION_LABELS = {};
  var REFERENCE_HINTS = {
    receive: "shipment, e.g. SH-2026-000001 (optional for an SSCC)",
    putaway: "source location code, e.g. QUAR",
    pick: "shipment, e.g. SH-2026-000001",
    ship: "shipment, e.g. SH-2026-000001",
    count: "count reference (optional)",
    verify: "dispensing reference (optional)"
  };
  Array.prototype.forEach.call(actionSelect.options, function (option) {
    ACTION_LABELS[option.value] = option.textContent;
  });

  var queue = [];
  var busy = false;
  var scanCounter = 0;

  // --- focus -------------------------------------------------------------------------------

  function focusCode() {
    codeInput.focus({ preventScroll: true });
  }

  function isEditing(element) {
    // The other fields keep the focus while a person uses them.
    return element && element !== codeInput && element.matches("select, input, textarea, button");
  }

  codeInput.addEventListener("blur", function () {
    window.setTimeout(function () {
      if (!isEditing(document.activeElement)) focusCode();
    }, 0);
  });
  document.addEventListener("click", function (event) {
    if (!event.target.closest("select, input, textarea, button, a, label")) focusCode();
  });
  [actionSelect, locationSelect, decommissionInput].forEach(function (element) {
    element.addEventListener("change", focusCode);
  });
  [referenceInput, quantityInput].forEach(function (element) {
    element.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        focusCode();
      }
    });
  });

  function showActionFields() {
    var action = actionSelect.value;
    decommissionBox.hidden = action !== "verify";
    if (action !== "verify") decommissionInput.checked = false;
    referenceInput.placeholder = REFERENCE_HINTS[action] || "";
  }
  actionSelect.addEventListener("change", showActionFields);
  showActionFields();

  // Ctrl+] is how a keyboard sends GS (FNC1); a browser field would drop the control character.
  codeInput.addEventListener("keydown", function (event) {
    if (event.ctrlKey && (event.key === "]" || event.code === "BracketRight")) {
      event.preventDefault();
      var start = codeInput.selectionStart, end = codeInput.selectionEnd, value = codeInput.value;
      codeInput.value = value.slice(0, start) + GS_PICTURE + value.slice(end);
      codeInput.setSelectionRange(start + 1, start + 1);
    }
  });

  // --- sending scans -----------------------------------------------------------------------

  function newScanId() {
    scanCounter += 1;
    var random = window.crypto && window.crypto.randomUUID
      ? window.crypto.randomUUID()
      : Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
    return "station-" + random + "-" + scanCounter;
  }

  function currentRequest(code) {
    var body = {
      code: code,
      action: actionSelect.value,
      location: locationSelect.value ? Number(locationSelect.value) : null,
      reference: referenceInput.value.trim(),
      scan_id: newScanId()
    };
    if (quantityInput.value !== "") body.quantity = Number(quantityInput.value);
    if (body.action === "verify" && decommissionInput.checked) body.decommission = "dispensed";
    return body;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = codeInput.value;
    if (code.trim() === "") {
      focusCode();
      return;
    }
    codeInput.value = "";
    var request = currentRequest(code);
    quantityInput.value = ""; // a quantity applies to one scan only
    enqueue(request, "");
    focusCode();
  });

  function enqueue(request, source) {
    queue.push({ request: request, source: source });
    showPending();
    if (!busy) next();
  }

  function next() {
    var item = queue.shift();
    if (!item) {
      busy = false;
      return;
    }
    busy = true;
    send(item.request, 0).then(function (result) {
      show(result, item);
      next();
    });
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": csrfToken
      },
      body: JSON.stringify(body)
    });
  }

  function send(request, attempt) {
    return postJson(root.dataset.scanUrl, request)
      .then(function (response) {
        return response.json().then(
          function (body) { return { status: response.status, body: body }; },
          function () { return { status: response.status, body: null }; }
        );
      })
      .catch(function () {
        if (attempt < 2) {
          // The same scan_id: if the first attempt was recorded, its answer comes back.
          return new Promise(function (resolve) {
            window.setTimeout(function () { resolve(send(request, attempt + 1)); }, 800 * (attempt + 1));
          });
        }
        return { status: 0, body: null };
      });
  }

  // --- showing answers ---------------------------------------------------------------------

  function setVerdict(kind, word, what, reasons) {
    verdict.className = "verdict " + kind;
    verdict.dataset.verdict = kind;
    verdict.querySelector(".verdict-word").textContent = word;
    verdict.querySelector(".verdict-what").textContent = what;
    var list = verdict.querySelector(".verdict-reasons");
    list.textContent = "";
    (reasons || []).forEach(function (reason) {
      var item = document.createElement("li");
      if (reason.warning) item.className = "warning";
      item.textContent = reason.detail || reason.code || "";
      if (reason.code) {
        var code = document.createElement("span");
        code.className = "reason-code";
        code.textContent = "(" + reason.code + ")";
        item.appendChild(code);
      }
      list.appendChild(item);
    });
    if (kind !== "pending") revealVerdict();
  }

  // On a phone the settings push the verdict down: bring the answer into view (the code field
  // keeps the focus, so the next scan still lands in it).
  function revealVerdict() {
    var box = verdict.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight + 1) {
      verdict.scrollIntoView({ block: "nearest" });
    }
  }

  function showPending() {
    var waiting = queue.length + (busy ? 1 : 0);
    if (waiting === 0) return;
    setVerdict("pending", "Checking…", waiting > 1 ? waiting + " scans waiting" : "", []);
  }

  function describe(body) {
    var parts = [ACTION_LABELS[body.action] || body.action];
    if (body.product) parts.push((body.product.name + " " + (body.product.strength || "")).trim());
    if (body.lot) parts.push("LOT " + body.lot.lot_number + " · EXP " + body.lot.expires_on);
    if (body.serial) parts.push("SN " + body.serial.serial_number);
    if (!body.product && body.parsed && body.parsed.sscc) parts.push("SSCC " + body.parsed.sscc);
    if (parts.length === 1 && body.raw_code) parts.push(body.raw_code);
    return parts.join(" · ");
  }

  function show(result, item) {
    var body = result.body || {};
    var prefix = item.source ? item.source + ": " : "";
    if (result.status === 200 && (body.verdict === "accepted" || body.verdict === "refused")) {
      var accepted = body.verdict === "accepted";
      var reasons = accepted
        ? (body.warnings || []).map(function (w) { return { code: w.code, detail: w.detail, warning: true }; })
        : body.reasons || [];
      var what = prefix + describe(body) + (body.replayed ? " (answered before)" : "");
      setVerdict(body.verdict, accepted ? "Accepted" : "Refused", what, reasons);
      addToLog(body.verdict, what, accepted ? "" : firstDetail(reasons));
      signal(accepted);
      return;
    }
    var detail;
    var signedOut = result.status === 401 ||
      (result.status === 403 && /authenticat|csrf/i.test((body.code || "") + " " + (body.detail || "")));
    if (result.status === 0) {
      detail = "No connection to the server: the scan was not recorded. Scan it again.";
    } else if (signedOut) {
      detail = "You are signed out: sign in again, then scan again.";
    } else {
      detail = body.detail || "The server could not answer (HTTP " + result.status + ").";
    }
    var failure = [{ code: body.code || (result.status ? "http_" + result.status : "offline"), detail: detail }];
    setVerdict("failed", "Not checked", prefix + (item.request.code || "").slice(0, 80), failure);
    if (signedOut) addLoginLink();
    addToLog("failed", prefix + (item.request.code || "").slice(0, 80), detail);
    signal(false);
  }

  function firstDetail(reasons) {
    return reasons.length ? reasons[0].detail : "";
  }

  function addLoginLink() {
    var link = document.createElement("a");
    link.href = root.dataset.loginUrl;
    link.textContent = "Sign in";
    var item = document.createElement("li");
    item.appendChild(link);
    verdict.querySelector(".verdict-reasons").appendChild(item);
  }

  function addToLog(kind, what, reason) {
    var empty = log.querySelector(".scan-empty");
    if (empty) empty.remove();
    var entry = document.createElement("li");
    entry.className = "scan-entry " + kind;
    var pill = document.createElement("span");
    pill.className = "pill " + (kind === "accepted" ? "released" : "rejected");
    pill.textContent = kind === "accepted" ? "Accepted" : kind === "refused" ? "Refused" : "Not checked";
    var text = document.createElement("span");
    text.className = "scan-entry-what";
    text.textContent = what;
    var time = document.createElement("time");
    time.className = "muted";
    var now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour12: false }) + " · " +
      (locationSelect.selectedOptions[0] ? locationSelect.selectedOptions[0].textContent.split(" · ")[0] : "");
    entry.append(pill, text, time);
    if (reason) {
      var why = document.createElement("span");
      why.className = "scan-entry-reason";
      why.textContent = reason;
      entry.appendChild(why);
    }
    log.insertBefore(entry, log.firstChild);
    while (log.children.length > LOG_LIMIT) log.removeChild(log.lastChild);
  }

  // A short high tone for accepted, a longer low one (and a buzz on phones) for refused.
  var audio = null;
  function signal(accepted) {
    try {
      if (!accepted && navigator.vibrate) navigator.vibrate([120, 60, 120]);
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return;
      audio = audio || new Context();
      var oscillator = audio.createOscillator();
      var gain = audio.createGain();
      oscillator.frequency.value = accepted ? 1320 : 330;
      gain.gain.value = 0.08;
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start();
      oscillator.stop(audio.currentTime + (accepted ? 0.08 : 0.35));
    } catch (error) {
      // Sound is a courtesy: a browser that refuses it still shows the verdict.
    }
  }

  // --- photos ------------------------------------------------------------------------------

  photoInput.addEventListener("change", function () {
    var file = photoInput.files && photoInput.files[0];
    if (!file) return;
    var request = currentRequest(""); // the settings at the moment the photo was chosen
    quantityInput.value = "";
    setVerdict("pending", "Reading photo…", file.name, []);
    var data = new FormData();
    data.append("image", file);
    fetch(root.dataset.decodeUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken },
      body: data
    })
      .then(function (response) {
        return response.json().then(
          function (body) { return { status: response.status, body: body }; },
          function () { return { status: response.status, body: {} }; }
        );
      })
      .catch(function () { return { status: 0, body: {} }; })
      .then(function (result) {
        photoInput.value = "";
        if (result.status === 200 && result.body.code) {
          request.code = result.body.code;
          enqueue(request, "Photo");
        } else {
          var detail = result.status === 0
            ? "No connection to the server: the photo was not read."
            : result.body.detail || "The photo could not be read (HTTP " + result.status + ").";
          setVerdict("failed", "No code read", file.name, [{ code: result.body.code || "offline", detail: detail }]);
          addToLog("failed", "Photo " + file.name, detail);
          signal(false);
        }
        focusCode();
      });
  });

  focusCode();
})();
