// The live screen: the server pushes the panels, already rendered, over Server-Sent Events:
// "urgent" (the queue and the toilet board) at once, "homes" (the overview) every few seconds.
// window.sbxSeen records when each alarm row first appeared (ms), for the benchmark.
// A toilet line is highlighted the moment its home's limit passes, between two pushes: its age
// is counted on from the server's (data-age when the panel came), never from this PC's clock.
(function () {
  "use strict";
  var panels = document.getElementById("panels");
  var status = document.getElementById("live-status");
  window.sbxSeen = window.sbxSeen || {};
  var title = document.title;
  function note() {
    var now = Date.now();
    // real alarms nobody has taken up, in the tab's title (tests page nobody)
    var waiting = +(document.getElementById("queue") || {dataset: {}}).dataset.waiting || 0;
    document.title = waiting ? "(" + waiting + ") " + title : title;
    panels.querySelectorAll("tr.alarm").forEach(function (row) {
      if (!(row.id in window.sbxSeen)) { window.sbxSeen[row.id] = {seen: now, stored: +row.dataset.stored}; }
    });
  }
  var received = Date.now();
  function overdue() {
    var waited = (Date.now() - received) / 1000;
    panels.querySelectorAll("tr.toilet").forEach(function (row) {
      if (+row.dataset.age + waited > +row.dataset.limit) { row.classList.add("over"); }
    });
  }
  note();
  setInterval(overdue, 1000);
  var source = new EventSource("/live" + window.location.search);
  source.addEventListener("urgent", function (e) {
    document.getElementById("live-urgent").innerHTML = e.data;
    received = Date.now();
    note();
    window.sbxUpdates = (window.sbxUpdates || 0) + 1;
  });
  source.addEventListener("homes", function (e) {
    document.getElementById("live-homes").innerHTML = e.data;
  });
  source.onopen = function () { status.textContent = status.dataset.live; status.className = "status on"; };
  source.onerror = function () { status.textContent = status.dataset.offline; status.className = "status off"; };
})();
