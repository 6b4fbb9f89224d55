// The web app's service worker (served at /app/sw.js, so its scope is /app/): task notifications
// from Web Push, and what their buttons do. A push carries text and a task's key
// (channels/webpush.py); every link is built here, on this origin, from that key, and every
// text reaches the notification as text, which browsers never render as markup.
"use strict";

var APP = "/app/";

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

function text(value, fallback) {
  return typeof value === "string" && value ? value : fallback;
}

// The page a click opens: the task's, or with "Run again" the task's page asking for it (its
// form runs the command, through the signed-in session and the relay's own checks).
function pageFor(data, action) {
  var task = data && text(data.task, "");
  if (!task) { return APP + "tasks"; }
  var page = APP + "t/" + encodeURIComponent(task);
  return action === "run" && data.run === true ? page + "?action=run-again#relayed" : page;
}

self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {};
  }
  if (data === null || typeof data !== "object") { data = {}; }
  var task = text(data.task, "");
  var actions = [];
  if (task) {
    actions.push({action: "open", title: "Open"});
    if (data.run === true) { actions.push({action: "run", title: "Run again"}); }
  }
  var options = {
    body: text(data.body, ""),
    icon: APP + "static/icon-192.png",
    data: {task: task, run: data.run === true},
    actions: actions
  };
  if (task) {  // a task's newer notification replaces its older one, and rings again
    options.tag = "task:" + task;
    options.renotify = true;
  }
  event.waitUntil(self.registration.showNotification(text(data.title, "claude-notify"), options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = new URL(pageFor(event.notification.data, event.action), self.location.origin).href;
  var done = self.clients.matchAll({type: "window"}).then(function (windows) {
    var open = windows.filter(function (w) {
      return w.url.indexOf(self.location.origin + APP) === 0;
    })[0];
    if (!open) { return self.clients.openWindow(url); }
    return open.navigate(url).then(function (shown) { return (shown || open).focus(); });
  });
  event.waitUntil(done);
});
