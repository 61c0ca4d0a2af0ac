// The report's only script (its hash is the page's script-src). The page reads whole
// without it; it adds: printing every collapsed section, hiding a chart's line from its
// legend, choosing the scope of the time charts, and zooming them all to a dragged range.
(function () {
  "use strict";
  var SVG = (document.querySelector("svg") || document.documentElement).namespaceURI;
  var STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400];

  // Print every collapsed section too: a printed report should hold everything.
  var opened = [];
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.open = true;
      opened.push(d);
    });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });

  // A legend entry shows or hides its line.
  document.querySelectorAll("figure.chart-box ul.legend li[data-series]").forEach(function (li) {
    li.addEventListener("click", function () {
      var off = li.classList.toggle("off");
      var box = li.closest("figure");
      box.querySelectorAll('path.line[data-series="' + li.dataset.series + '"]')
        .forEach(function (path) { path.classList.toggle("hidden", off); });
    });
  });

  // One scope of time charts at a time: the whole run, a request, a target.
  var scopes = document.querySelectorAll("#time button.scope");
  function showSet(key) {
    document.querySelectorAll("#time .chart-set").forEach(function (set) {
      set.hidden = set.dataset.set !== key;
    });
    scopes.forEach(function (b) { b.classList.toggle("on", b.dataset.set === key); });
  }
  if (scopes.length) {
    document.body.classList.add("scoped");
    scopes.forEach(function (b) {
      b.addEventListener("click", function () { showSet(b.dataset.set); });
    });
    showSet(scopes[0].dataset.set);
    window.addEventListener("beforeprint", function () {
      document.querySelectorAll("#time .chart-set").forEach(function (s) { s.hidden = false; });
    });
    window.addEventListener("afterprint", function () {
      var on = document.querySelector("#time button.scope.on");
      if (on) { showSet(on.dataset.set); }
    });
  }

  // Zoom: drag across any time chart; every time chart follows. Double-click resets.
  var charts = Array.prototype.slice.call(document.querySelectorAll('svg.chart[data-zoom="x"]'));
  var reset = document.querySelector("#time .reset-zoom");
  function clock(s) {
    s = Math.round(s);
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m" + (s % 60 ? ("0" + s % 60).slice(-2) + "s" : ""); }
    return Math.floor(s / 3600) + "h" + ("0" + Math.floor((s % 3600) / 60)).slice(-2) + "m";
  }
  function frame(svg) {
    var d = svg.dataset;
    return { lo: +d.lo, hi: +d.hi, left: +d.left, right: +d.right, top: +d.top,
             bottom: +d.bottom };
  }
  function ticks(svg, f, lo, hi) {
    var group = svg.querySelector("g.xticks");
    if (!group) { return; }
    while (group.firstChild) { group.removeChild(group.firstChild); }
    var span = Math.max(hi - lo, 1e-9);
    var step = STEPS.find(function (s) { return span / s <= 8; }) || STEPS[STEPS.length - 1];
    if (span < 8) { step = span <= 2 ? 0.25 : span <= 4 ? 0.5 : 1; }
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) {
      var x = f.left + (t - lo) / span * (f.right - f.left);
      var mark = document.createElementNS(SVG, "line");
      mark.setAttribute("class", "tick-mark");
      mark.setAttribute("x1", x.toFixed(1)); mark.setAttribute("x2", x.toFixed(1));
      mark.setAttribute("y1", f.bottom); mark.setAttribute("y2", f.bottom + 4);
      var text = document.createElementNS(SVG, "text");
      text.setAttribute("class", "tick");
      text.setAttribute("x", x.toFixed(1)); text.setAttribute("y", f.bottom + 17);
      text.setAttribute("text-anchor", "middle");
      text.textContent = step < 1 ? t.toFixed(2).replace(/0+$/, "").replace(/\.$/, "") + "s"
                                  : clock(t);
      group.appendChild(mark); group.appendChild(text);
    }
  }
  function zoomTo(lo, hi) {
    charts.forEach(function (svg) {
      var f = frame(svg);
      var a = Math.max(f.lo, lo), b = Math.min(f.hi, hi);
      if (b - a <= 0) { return; }
      var k = (f.hi - f.lo) / (b - a);
      var px = f.left + (a - f.lo) / (f.hi - f.lo) * (f.right - f.left);
      var g = svg.querySelector("g.zoom");
      g.setAttribute("transform", "translate(" + (-f.left) + " " + (-f.top) + ") translate(" +
                     (f.left - px * k).toFixed(3) + " 0) scale(" + k.toFixed(5) + " 1)");
      svg.classList.toggle("zoomed", k > 1.0001);
      svg.dataset.view = a + "," + b;
      ticks(svg, f, a, b);
    });
    if (reset) { reset.hidden = !charts.some(function (s) { return s.classList.contains("zoomed"); }); }
  }
  function unzoom() {
    charts.forEach(function (svg) { var f = frame(svg); zoomTo(f.lo, f.hi); });
  }
  function toTime(svg, clientX) {
    var f = frame(svg);
    var box = svg.getBoundingClientRect();
    var x = (clientX - box.left) / box.width * svg.viewBox.baseVal.width;
    var view = (svg.dataset.view || (f.lo + "," + f.hi)).split(",").map(Number);
    var share = Math.min(1, Math.max(0, (x - f.left) / (f.right - f.left)));
    return view[0] + share * (view[1] - view[0]);
  }
  charts.forEach(function (svg) {
    var start = null, band = null;
    svg.addEventListener("mousedown", function (e) {
      if (e.button !== 0) { return; }
      e.preventDefault();
      var f = frame(svg);
      start = { t: toTime(svg, e.clientX), x: e.clientX };
      band = document.createElementNS(SVG, "rect");
      band.setAttribute("class", "selecting");
      band.setAttribute("y", f.top); band.setAttribute("height", f.bottom - f.top);
      band.setAttribute("width", 0);
      svg.appendChild(band);
    });
    svg.addEventListener("mousemove", function (e) {
      if (!start) { return; }
      var box = svg.getBoundingClientRect(), scale = svg.viewBox.baseVal.width / box.width;
      var x0 = (Math.min(start.x, e.clientX) - box.left) * scale;
      band.setAttribute("x", x0.toFixed(1));
      band.setAttribute("width", (Math.abs(e.clientX - start.x) * scale).toFixed(1));
    });
    function finish(e) {
      if (!start) { return; }
      var end = toTime(svg, e.clientX), moved = Math.abs(e.clientX - start.x);
      if (band && band.parentNode) { band.parentNode.removeChild(band); }
      var a = Math.min(start.t, end), b = Math.max(start.t, end);
      start = null; band = null;
      if (moved > 4 && b - a > 0.05) { zoomTo(a, b); }
    }
    svg.addEventListener("mouseup", finish);
    svg.addEventListener("mouseleave", finish);
    svg.addEventListener("dblclick", unzoom);
  });
  if (reset) { reset.addEventListener("click", unzoom); }
  window.llmscenZoom = zoomTo;   // for tests and the curious: zoomTo(startSeconds, endSeconds)
})();
