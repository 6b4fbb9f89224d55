// Registers the web app's service worker (its notifications; the app installable on a phone)
// and, on the channels page, wires "Enable notifications": the browser subscribes to push with
// this server's VAPID key and the subscription is saved as a webpush channel of this account.
(function () {
  if (!("serviceWorker" in navigator)) { return; }
  navigator.serviceWorker.register("/app/sw.js", {scope: "/app/"}).catch(function () {});
  var button = document.getElementById("push-enable");
  var state = document.getElementById("push-state");
  if (!button || !state) { return; }

  function say(message) {
    state.textContent = message;
    state.hidden = false;
  }

  if (!("PushManager" in window) || !("Notification" in window)) {
    say("This browser cannot receive push notifications (on an iPhone, add this app to the " +
        "home screen and open it from there).");
    return;
  }
  button.hidden = false;

  function bytes(base64url) {
    var raw = atob(base64url.replace(/-/g, "+").replace(/_/g, "/"));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }

  function same(a, b) {
    if (!a || a.byteLength !== b.byteLength) { return false; }
    var left = new Uint8Array(a);
    for (var i = 0; i < b.length; i++) { if (left[i] !== b[i]) { return false; } }
    return true;
  }

  // A subscription made with another key (the server's key was changed) cannot be pushed to.
  function subscription(registration, key) {
    return registration.pushManager.getSubscription().then(function (existing) {
      if (existing && same(existing.options.applicationServerKey, key)) { return existing; }
      var gone = existing ? existing.unsubscribe() : Promise.resolve(true);
      return gone.then(function () {
        return registration.pushManager.subscribe({userVisibleOnly: true,
                                                   applicationServerKey: key});
      });
    });
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    say("Asking this browser…");
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") {
        throw new Error("notifications are blocked for this site in the browser's settings");
      }
      return navigator.serviceWorker.ready;
    }).then(function (registration) {
      return subscription(registration, bytes(button.getAttribute("data-key")));
    }).then(function (made) {
      var json = made.toJSON();
      var form = new URLSearchParams();
      form.set("csrf", button.getAttribute("data-csrf"));
      form.set("endpoint", json.endpoint);
      form.set("p256dh", json.keys.p256dh);
      form.set("auth", json.keys.auth);
      return fetch("/app/push/subscribe", {method: "POST", body: form,
                                           credentials: "same-origin"});
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) { throw new Error(answer.error || "the server refused it"); }
        window.location.assign(answer.channel);
      });
    }).catch(function (error) {
      say("Notifications are not on: " + error.message + ".");
      button.disabled = false;
    });
  });
})();
