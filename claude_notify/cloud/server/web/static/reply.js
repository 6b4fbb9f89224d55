// A notification's task link may carry a reply token in its fragment (#reply=cnr_…): the
// fragment never reaches a server, so only this page can hand it to the reply form.
(function () {
  var match = /(?:^|[#&])reply=(cnr_[A-Za-z0-9_.-]{1,200})(?:&|$)/.exec(window.location.hash);
  var section = document.getElementById("reply");
  if (!match || !section) { return; }
  document.getElementById("reply-token").value = match[1];
  section.hidden = false;
  // Out of the address bar and the history: it works once, and is nobody else's to copy.
  history.replaceState(null, "", window.location.pathname + window.location.search);
})();
