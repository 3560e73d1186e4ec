// The checkout page's only script: poll the order's status every 2 s and show the
// outcome in place (no reload), and count down to the order's expiry. Without
// JavaScript the page still works: reload it to see the new status.
(function () {
  "use strict";
  var card = document.getElementById("checkout");
  if (!card) return;
  var statusUrl = card.getAttribute("data-status-url");
  var expiresAt = Date.parse(card.getAttribute("data-expires-at"));
  var current = card.getAttribute("data-status");
  var lastAttempt = card.getAttribute("data-attempt") || "";
  var countdown = document.getElementById("countdown");
  var PAID = { paid: true, partially_refunded: true };

  function show(status) {
    current = status;
    card.setAttribute("data-status", status);
    var panel = document.getElementById(PAID[status] ? "state-paid" : "state-" + status);
    if (!panel) { window.location.reload(); return; }
    if (PAID[status] && card.getAttribute("data-receipt") !== "1") fetchReceipt(panel);
    var payable = document.getElementById("payable");
    if (payable) payable.hidden = true;
    document.getElementById("attempt-failed").hidden = true;
    var states = card.querySelectorAll(".state");
    for (var i = 0; i < states.length; i++) states[i].hidden = states[i] !== panel;
    var headline = document.getElementById("headline");
    headline.textContent = panel.getAttribute("data-headline");
    document.title = headline.textContent + " · " + (card.getAttribute("data-site-name") || "Tuition");
    headline.focus();
  }

  // Paid: the receipt (amount, time, references) only the server knows, taken from the
  // page as it now is, without leaving this one.
  function fetchReceipt(panel) {
    card.setAttribute("data-receipt", "1");
    fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("state-paid");
        if (fresh) panel.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the receipt shows on the next load */ });
  }

  function attemptFailed() {
    var qr = document.getElementById("qr");
    if (qr) qr.hidden = true;
    var other = document.getElementById("other-methods");
    if (other) other.open = true;
    var failed = document.getElementById("attempt-failed");
    failed.hidden = false;
    // The gateway's reason, in words, as the page now says it.
    fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var page = new DOMParser().parseFromString(html, "text/html");
        var reason = page.querySelector("[data-testid=decline-reason]");
        if (reason && !failed.querySelector("[data-testid=decline-reason]")) {
          failed.appendChild(document.importNode(reason, true));
        }
      })
      .catch(function () { /* shown on the next load */ });
    // No attempt is open any more, so the coupon may change again.
    var locked = document.getElementById("coupon-locked");
    if (locked) locked.hidden = true;
    var fields = card.querySelectorAll(".coupon-form [disabled]");
    for (var i = 0; i < fields.length; i++) fields[i].disabled = false;
  }

  function poll() {
    fetch(statusUrl, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        if (s.status !== current) show(s.status);
        else if (s.attempt === "failed" && lastAttempt !== "failed") attemptFailed();
        lastAttempt = s.attempt || "";
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { if (current === "pending_payment") window.setTimeout(poll, 2000); });
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    if (!countdown || current !== "pending_payment") return;
    var left = Math.max(0, Math.floor((expiresAt - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    countdown.textContent = (h ? h + ":" + pad(m) : String(m)) + ":" + pad(s);
  }

  // Inside WeChat: hand the JSAPI parameters to WeChat's bridge, which shows its own
  // payment sheet; the poll above sees the outcome.
  var jsapi = document.getElementById("jsapi");
  if (jsapi && current === "pending_payment") {
    var params = JSON.parse(jsapi.getAttribute("data-params"));
    var invoke = function () {
      if (!window.WeixinJSBridge) return;
      window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function () {});
    };
    // WeChat's sheet opens by itself once per attempt; after that, by the button.
    var once = "tuition.jsapi." + params["package"];
    var auto = function () {
      try {
        if (window.sessionStorage.getItem(once)) return;
        window.sessionStorage.setItem(once, "1");
      } catch (e) { /* storage off: open it anyway */ }
      invoke();
    };
    document.getElementById("jsapi-pay").addEventListener("click", invoke);
    if (window.WeixinJSBridge) auto();
    else document.addEventListener("WeixinJSBridgeReady", auto, false);
  }

  // Surcharge mode: the Pay button shows the total of the method chosen.
  var radios = card.querySelectorAll("input[data-pay-label]");
  var payButton = card.querySelector(".pay-form [data-testid=pay-button]");
  for (var r = 0; r < radios.length; r++) {
    radios[r].addEventListener("change", function (event) {
      if (payButton && event.target.checked) {
        payButton.textContent = event.target.getAttribute("data-pay-label");
      }
    });
  }

  if (current === "pending_payment") {
    tick();
    window.setInterval(tick, 1000);
    window.setTimeout(poll, 2000);
  }
})();
