/* The incident map: Leaflet (static/leaflet/, kept in the repository),
 * the current position estimate (receiver/estimate.py) with its accuracy
 * circle, the coarse evidence beside it (grey dashed circles: a newer
 * resolved cell or Wi-Fi position, or the finer fix the estimate has
 * moved on from), and the trail.
 *
 * Tiles come from the console's configured tile URL (OpenStreetMap by
 * default). When none is configured, or the first tile fails to load (no
 * network, a blocked tile server), the map switches to a plain grid with
 * the coordinates of each cell: the marker, circle and trail are drawn
 * the same, at their exact places, so the position is never hidden by a
 * missing map.
 */
(function () {
  "use strict";
  var el = document.getElementById("map");
  var dataEl = document.getElementById("map-data");
  if (!el || !dataEl || !window.L) return;
  var data = JSON.parse(dataEl.textContent);
  var note = document.getElementById("map-note");
  var map = L.map(el, {zoomControl: true, attributionControl: true});
  // a view before any layer: Leaflet places circles and tiles from it
  if (data.pos) map.setView([data.pos.lat, data.pos.lon], 16);
  else if (data.trail && data.trail.length) map.setView([data.trail[0].lat, data.trail[0].lon], 15);
  else map.setView([20, 0], 2);

  var Grid = L.GridLayer.extend({
    createTile: function (coords) {
      var size = this.getTileSize();
      var c = document.createElement("canvas");
      c.width = size.x;
      c.height = size.y;
      c.className = "grid-tile";
      var g = c.getContext("2d");
      g.strokeStyle = "#c8c8c8";
      g.strokeRect(0.5, 0.5, size.x - 1, size.y - 1);
      var nw = this._map.unproject(coords.scaleBy(size), coords.z);
      g.fillStyle = "#777";
      g.font = "11px sans-serif";
      g.fillText(nw.lat.toFixed(4) + ", " + nw.lng.toFixed(4), 4, 13);
      return c;
    }
  });
  var grid = null;
  function useGrid(why) {
    if (grid) return;
    grid = new Grid({attribution: "plain grid"});
    grid.addTo(map);
    el.dataset.tiles = "grid";
    if (note) { note.hidden = false; note.textContent = why; }
  }
  if (data.tiles) {
    var tiles = L.tileLayer(data.tiles, {maxZoom: 19, attribution: "&copy; OpenStreetMap contributors"});
    tiles.once("tileerror", function () {
      map.removeLayer(tiles);
      useGrid("Map tiles could not be loaded: a plain grid is shown; the position, circle and trail are exact.");
    });
    tiles.once("tileload", function () { if (!grid) el.dataset.tiles = "tiles"; });
    tiles.addTo(map);
  } else {
    useGrid("No tile server configured: a plain grid is shown.");
  }

  var trailLine = L.polyline([], {color: "#1565c0", weight: 3, opacity: 0.8, className: "trail"}).addTo(map);
  var trailPts = L.layerGroup().addTo(map);
  var circle = null, marker = null;

  function addTrail(p) {
    trailLine.addLatLng([p.lat, p.lon]);
    L.circleMarker([p.lat, p.lon], {radius: 3, color: "#1565c0", weight: 1, fillOpacity: 0.6, className: "trail-point"})
      .bindTooltip(p.source + (p.accuracy_m != null ? " +/-" + p.accuracy_m + " m" : "")).addTo(trailPts);
  }
  function show(p, fit) {
    if (!p) return;
    var ll = [p.lat, p.lon];
    var r = p.accuracy_m != null ? p.accuracy_m : 0;
    if (!circle) {
      circle = L.circle(ll, {radius: r, color: "#c62828", weight: 2, fillOpacity: 0.12, className: "accuracy"}).addTo(map);
      marker = L.circleMarker(ll, {radius: 7, color: "#fff", weight: 2, fillColor: "#c62828", fillOpacity: 1,
                                   className: "position"}).addTo(map);
    } else {
      circle.setLatLng(ll).setRadius(r);
      marker.setLatLng(ll);
    }
    marker.bindTooltip(p.source + (p.accuracy_m != null ? ", +/-" + p.accuracy_m + " m" : "") +
                       (p.age_s != null ? ", " + p.age_s + " s old" : ""));
    el.dataset.lat = p.lat;
    el.dataset.lon = p.lon;
    el.dataset.accuracy = r;
    el.dataset.source = p.source;
    if (fit) {
      if (r > 0) map.fitBounds(circle.getBounds(), {maxZoom: 17, padding: [30, 30]});
      else map.setView(ll, 16);
    }
  }

  var evidence = L.layerGroup().addTo(map);
  function showEvidence(items) {
    evidence.clearLayers();
    (items || []).forEach(function (e) {
      if (e.lat == null || e.lon == null) return;  // an observation the location database does not know
      var words = (e.newer ? "newer coarse evidence: " : "older, finer: ") + e.source +
        (e.accuracy_m != null ? ", +/-" + e.accuracy_m + " m" : "") + (e.age_s != null ? ", " + e.age_s + " s old" : "");
      L.circle([e.lat, e.lon], {radius: e.accuracy_m != null ? e.accuracy_m : 0, color: "#616161", weight: 2,
                                dashArray: "6 4", fillOpacity: 0.05, className: "evidence"})
        .bindTooltip(words).addTo(evidence);
    });
    el.dataset.evidence = evidence.getLayers().length;
  }

  (data.trail || []).forEach(addTrail);
  showEvidence(data.evidence);
  if (data.pos) {
    show(data.pos, true);
  } else if (data.trail && data.trail.length) {
    map.fitBounds(trailLine.getBounds(), {maxZoom: 16});
  }

  window.panicMap = {
    evidence: showEvidence,
    update: function (p) {
      var last = data.trail && data.trail.length ? data.trail[data.trail.length - 1] : null;
      if (!last || last.lat !== p.lat || last.lon !== p.lon) {
        addTrail(p);
        data.trail.push(p);
      }
      show(p, !circle);
    },
    map: map
  };
})();
