// The web app's service worker (served at /app/sw.js, so its scope is /app/): task notifications
// and permission requests from Web Push, and what their buttons do. A push carries text and a
// task's key or an approval's id (channels/webpush.py, relay/push_approvals.py); every link is
// built here, on this origin, from that key or id, and every text reaches the notification as
// text, which browsers never render as markup.
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

// A permission request: Allow and Deny (a plan: Approve plan and Keep planning; Claude's
// questions: none, a click opens the page with their options). Only "allow" and "deny" are ever
// answered from here, whatever the push says. Never kept back by the browser
// ("requireInteraction"): the terminal waits on it.
function approvalActions(data) {
  if (!Array.isArray(data.answers)) {
    return [{action: "allow", title: "Allow"}, {action: "deny", title: "Deny"}];
  }
  return data.answers.filter(function (pair) {
    return Array.isArray(pair) && (pair[0] === "allow" || pair[0] === "deny");
  }).map(function (pair) {
    return {action: pair[0], title: text(pair[1], pair[0] === "allow" ? "Allow" : "Deny"),
            done: text(pair[2], "")};
  }).slice(0, 2);
}

function approvalNotice(data) {
  var approval = text(data.approval, "");
  var actions = approvalActions(data);
  var said = {};  // what the confirmation says for each button ("Plan approved")
  actions.forEach(function (a) { if (a.done) { said[a.action] = a.done.slice(0, 60); } });
  actions = actions.map(function (a) { return {action: a.action, title: a.title}; });
  return self.registration.showNotification(text(data.title, "Claude asks for permission"), {
    body: text(data.body, ""),
    icon: APP + "static/icon-192.png",
    tag: "approval:" + approval,
    renotify: true,
    requireInteraction: true,
    data: {approval: approval, said: said},
    actions: actions
  });
}

self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {};
  }
  if (data === null || typeof data !== "object") { data = {}; }
  if (data.kind === "approval" && /^[0-9a-f]{32}$/.test(text(data.approval, ""))) {
    event.waitUntil(approvalNotice(data));
    return;
  }
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

function show(path) {
  var url = new URL(path, self.location.origin).href;
  return self.clients.matchAll({type: "window"}).then(function (windows) {
    var open = windows.filter(function (w) {
      return w.url.indexOf(self.location.origin + APP) === 0;
    })[0];
    if (!open) { return self.clients.openWindow(url); }
    return open.navigate(url).then(function (shown) { return (shown || open).focus(); });
  });
}

// Allow or Deny from the notification: the approval's page is read with this browser's session
// and its own form posted with that page's token, so the answer passes every check a click on
// the page would (owner, origin, token, first answer wins). Signed out, or anything unexpected:
// the page is opened to answer there.
function answer(approval, choice, said) {
  var page = APP + "approvals/" + approval;
  return fetch(page, {credentials: "same-origin"}).then(function (read) {
    return read.text().then(function (html) {
      var token = /name="csrf" value="([^"]+)"/.exec(html);
      if (!read.ok || read.redirected || !token) { throw new Error("not signed in"); }
      var form = new URLSearchParams();
      form.set("csrf", token[1]);
      form.set("answer", choice);
      return fetch(page, {method: "POST", body: form, credentials: "same-origin",
                          redirect: "manual"});
    });
  }).then(function (sent) {
    var done = sent.type === "opaqueredirect" || sent.status === 303;
    if (!done && sent.status !== 409) { throw new Error("refused"); }
    var title = !done ? "Already answered, or expired"
      : text(said && said[choice], choice === "allow" ? "Allowed" : "Denied");
    return self.registration.showNotification(title, {
      tag: "approval:" + approval, icon: APP + "static/icon-192.png",
      data: {approval: approval}
    });
  }).catch(function () { return show(page); });
}

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var data = event.notification.data || {};
  var approval = text(data.approval, "");
  var done;
  if (/^[0-9a-f]{32}$/.test(approval)) {
    done = event.action === "allow" || event.action === "deny"
      ? answer(approval, event.action, data.said) : show(APP + "approvals/" + approval);
  } else {
    done = show(pageFor(data, event.action));
  }
  event.waitUntil(done);
});
