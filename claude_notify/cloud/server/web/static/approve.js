// The e-mailed link's page (/app/approvals/<id>/link#t=cna_…): the key is in the fragment, which
// never reaches a server. It is posted (in the body) to show the request, then with the answer.
// Everything the server sends is put on the page as text, never as markup.
(function () {
  var root = document.getElementById("ap-link");
  if (!root) { return; }
  var base = window.location.pathname.replace(/\/+$/, "");
  var stored = "cna:" + base;
  var match = /(?:^|[#&])t=(cna_[A-Za-z0-9_-]{20,96})(?:&|$)/.exec(window.location.hash);
  var key = match ? match[1] : null;
  try {
    if (key) { sessionStorage.setItem(stored, key); } else { key = sessionStorage.getItem(stored); }
  } catch (e) { /* storage off: the key lives as long as the page */ }
  if (match) {
    // Out of the address bar and the history: it is nobody else's to copy. A reload in this tab
    // finds it in sessionStorage.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  function el(id) { return document.getElementById(id); }
  function show(id, text) {
    var node = el(id);
    if (text !== undefined) { node.textContent = text; }
    node.hidden = false;
  }
  function hide(id) { el(id).hidden = true; }
  function problem(text) { hide("ap-status"); show("ap-problem", text); }

  function post(path, fields, options) {
    var body = new URLSearchParams(fields);
    body.set("token", key);
    (options || []).forEach(function (value) { body.append("option", value); });
    return fetch(base + "/" + path, {method: "POST", body: body, credentials: "same-origin",
                                     cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (r) {
        return r.json().catch(function () { return {problem: "The server refused this (" + r.status + ")."}; })
          .then(function (data) { data.status = r.status; return data; });
      });
  }

  function outcome(said, note) {
    hide("ap-form");
    show("ap-said", said);
    el("ap-note-said").textContent = note ? ": " + note : "";
    show("ap-outcome");
  }

  function card(data) {
    if (data.status !== 200) { problem(data.problem || "This link cannot be used."); return; }
    show("ap-title", data.title);
    show("ap-where", data.where);
    show("ap-display", data.display);
    if (!data.answerable) {
      hide("ap-status");
      outcome(data.said, data.note);
      return;
    }
    show("ap-status", "Answer by " + data.until + ", or in the terminal.");
    el("ap-allow").textContent = data.allow;
    el("ap-deny").textContent = data.deny;
    if (data.kind === "plan") { el("ap-note-label").textContent = "Note with it"; }
    if (data.kind === "question") {
      hide("ap-allow");
      if (data.questions.length) { questions(data.questions); show("ap-answer"); }
      else { problem("Answer these questions in the terminal."); }
    }
    if (data.suggestion) {
      el("ap-suggestion").textContent = data.suggestion;
      show("ap-session");
    }
    show("ap-form");
  }

  // Claude's questions, as radio buttons (check boxes where several answers are allowed); the
  // answer names options by their numbers only ("question:option"), never by their text.
  function questions(list) {
    var box = el("ap-questions");
    list.forEach(function (question, q) {
      var set = document.createElement("fieldset");
      var legend = document.createElement("legend");
      legend.textContent = (q + 1) + (question.header ? ". " + question.header : "") +
        (question.multi ? " (choose any)" : "");
      set.appendChild(legend);
      question.options.forEach(function (text, o) {
        var label = document.createElement("label");
        var input = document.createElement("input");
        input.type = question.multi ? "checkbox" : "radio";
        input.name = "option-" + q;
        input.value = q + ":" + o;
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + text));
        set.appendChild(label);
      });
      box.appendChild(set);
    });
    box.hidden = false;
  }

  function chosen() {
    var picked = el("ap-questions").querySelectorAll("input:checked");
    var values = [];
    for (var i = 0; i < picked.length; i++) { values.push(picked[i].value); }
    return values;
  }

  function answer(which) {
    var buttons = el("ap-form").querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    var fields = {answer: which};
    if (which === "deny") { fields.note = el("ap-note").value; }
    post("answer", fields, which === "answer" ? chosen() : []).then(function (data) {
      if (data.status === 200) {
        hide("ap-status");
        outcome(data.said, which === "deny" ? el("ap-note").value.trim() : "");
        try { sessionStorage.removeItem(stored); } catch (e) { /* nothing kept */ }
        return;
      }
      problem(data.problem || "Not answered.");
      if (data.status === 422) {  // nothing spent: choose again
        for (var k = 0; k < buttons.length; k++) { buttons[k].disabled = false; }
        return;
      }
      if (data.said) { outcome(data.said, ""); }
    }, function () {
      problem("Not answered: the server could not be reached. Try again.");
      for (var j = 0; j < buttons.length; j++) { buttons[j].disabled = false; }
    });
  }

  el("ap-form").addEventListener("submit", function (event) { event.preventDefault(); });
  var choices = el("ap-form").querySelectorAll("button[data-answer]");
  for (var i = 0; i < choices.length; i++) {
    choices[i].addEventListener("click", function (event) {
      answer(event.currentTarget.getAttribute("data-answer"));
    });
  }

  if (!key) { problem("This link has no key: open it from its e-mail again."); return; }
  post("card", {}).then(card, function () {
    problem("The server could not be reached. Reload to try again.");
  });
})();
