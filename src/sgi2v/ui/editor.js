/* The trajectory editor of `sgi2v ui`: boxes, their paths and the camera motion drawn on a canvas.
 *
 * The trajectory object (the JSON format of sgi2v.trajectory, coordinates in pixels of the uploaded
 * image) is the editor's only state: every edit changes it, undo and redo restore earlier copies of
 * it, and the page reads it back as text. Mouse moves are handled here; nothing goes to the server
 * until an edit is finished.
 *
 * Two layers: `Model` (pure geometry and edits on the object, no DOM: usable from Node) and `mount`
 * (the canvas, the side panel and the mouse and keyboard). `sampleEntry` and `cameraBoxes` compute
 * per-frame boxes exactly as sgi2v.trajectory.parse_trajectory does, so the ticks drawn are the
 * frames the model gets.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.SGI2VEditor = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // sgi2v.video.PALETTE: box n is drawn in colour n % 8, as in the overlay video.
  const PALETTE = [[255, 64, 64], [64, 200, 255], [255, 200, 40], [120, 255, 120], [255, 110, 220],
    [170, 130, 255], [255, 150, 60], [60, 255, 210]];
  const COLOR_NAMES = ["red", "blue", "yellow", "green", "pink", "purple", "orange", "teal"];
  const DIRECTIONS = { left: [-1, 0], right: [1, 0], up: [0, -1], down: [0, 1] };
  const DEFAULT_PAN_AMOUNT = 0.25;
  const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];

  const r2 = (v) => Math.round(Number(v) * 100) / 100; // coordinates are written to 0.01 pixel
  const clone = (v) => JSON.parse(JSON.stringify(v));
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const centreOf = (box) => [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2];

  // -- sampling, as sgi2v.trajectory ------------------------------------------------------------

  function evenTimes(count, numFrames) {
    if (count <= 1) return [0];
    return Array.from({ length: count }, (_, i) => (i * (numFrames - 1)) / (count - 1));
  }

  /** Values [[x, y], ...] at increasing `times`, evaluated at `ts` (held constant outside the keys). */
  function interpolateAt(times, values, ts, kind) {
    const dims = values[0].length;
    if (times.length === 1) return ts.map(() => values[0].slice());
    if (kind !== "spline" || times.length === 2) {
      return ts.map((t) => {
        if (t <= times[0]) return values[0].slice();
        if (t >= times[times.length - 1]) return values[values.length - 1].slice();
        let k = 0;
        while (times[k + 1] < t) k++;
        const s = (t - times[k]) / (times[k + 1] - times[k]);
        return values[k].map((v, d) => v + s * (values[k + 1][d] - v));
      });
    }
    // Catmull-Rom (cubic Hermite with finite-difference tangents), valid for uneven key times.
    const n = times.length;
    const tangents = values.map((_, k) => {
      const a = k === 0 ? 0 : k === n - 1 ? n - 2 : k - 1;
      const b = k === 0 ? 1 : k === n - 1 ? n - 1 : k + 1;
      return values[k].map((_, d) => (values[b][d] - values[a][d]) / (times[b] - times[a]));
    });
    return ts.map((t0) => {
      const t = clamp(t0, times[0], times[n - 1]);
      let k = 0;
      while (k < n - 2 && times[k + 1] <= t) k++;
      const dt = times[k + 1] - times[k];
      const s = (t - times[k]) / dt;
      const h00 = 2 * s ** 3 - 3 * s ** 2 + 1, h10 = s ** 3 - 2 * s ** 2 + s;
      const h01 = -2 * s ** 3 + 3 * s ** 2, h11 = s ** 3 - s ** 2;
      const out = [];
      for (let d = 0; d < dims; d++) {
        out.push(h00 * values[k][d] + h10 * dt * tangents[k][d] + h01 * values[k + 1][d] + h11 * dt * tangents[k + 1][d]);
      }
      return out;
    });
  }

  /** The points of an entry's motion with their times: [{x, y, t, frame}] in the file's coordinates. */
  function motionKeys(entry, numFrames) {
    const c = centreOf(entry.box);
    if (entry.path) {
      const times = evenTimes(entry.path.length, numFrames);
      return entry.path.map((p, i) => ({ x: p[0], y: p[1], t: times[i], frame: null }));
    }
    if (entry.keyframes) {
      const frames = Object.keys(entry.keyframes).map(Number);
      const keys = frames.map((f) => ({ x: entry.keyframes[String(f)][0], y: entry.keyframes[String(f)][1], t: f, frame: f }));
      if (!frames.includes(0)) keys.push({ x: c[0], y: c[1], t: 0, frame: 0, implicit: true });
      return keys.sort((a, b) => a.t - b.t);
    }
    return [{ x: c[0], y: c[1], t: 0, frame: null }];
  }

  /** The points [[x, y]] at `fractions` of the polyline `points`' arc length (sgi2v.trajectory._arc_positions). */
  function arcPositions(points, fractions) {
    const kept = [points[0]], arc = [0];
    for (let k = 1; k < points.length; k++) {
      const length = Math.hypot(points[k][0] - points[k - 1][0], points[k][1] - points[k - 1][1]);
      if (length > 0) { kept.push(points[k]); arc.push(arc[arc.length - 1] + length); }
    }
    if (kept.length === 1) return { positions: fractions.map(() => kept[0].slice()), arc, kept };
    const total = arc[arc.length - 1];
    const positions = fractions.map((u) => {
      const target = u * total;
      let k = 0;
      while (k < arc.length - 2 && arc[k + 1] < target) k++;
      const s = clamp((target - arc[k]) / (arc[k + 1] - arc[k]), 0, 1);
      return [kept[k][0] + s * (kept[k + 1][0] - kept[k][0]), kept[k][1] + s * (kept[k + 1][1] - kept[k][1])];
    });
    return { positions, arc, kept };
  }

  const smoothstep = (u) => u * u * (3 - 2 * u);

  /**
   * A path travelled at constant speed or eased (the file's "timing": "speed" or "ease"), as
   * sgi2v.trajectory.resample_path: the centre per frame, and the frame at which each point is passed.
   */
  function timedPath(entry, numFrames) {
    const n = entry.path.length;
    let points = entry.path, knotIndex = entry.path.map((_, k) => k);
    if (entry.interpolation === "spline") { // the curve finely sampled by time, then travelled by arc length
      const samples = 32 * (n - 1) + 1;
      points = interpolateAt(evenTimes(n, samples), entry.path, Array.from({ length: samples }, (_, i) => i), "spline");
      knotIndex = entry.path.map((_, k) => 32 * k);
    }
    const frames = Array.from({ length: numFrames }, (_, f) => (numFrames > 1 ? f / (numFrames - 1) : 0));
    const u = entry.timing === "ease" ? frames.map(smoothstep) : frames;
    const path = arcPositions(points, u).positions;
    let length = 0;
    const along = [0];
    for (let k = 1; k < points.length; k++) along.push((length += Math.hypot(points[k][0] - points[k - 1][0], points[k][1] - points[k - 1][1])));
    const times = knotIndex.map((k) => {
      const a = length ? along[k] / length : 0;
      let lo = 0, hi = 1; // the time u whose (eased) arc fraction is a
      if (entry.timing !== "ease") lo = hi = a;
      else for (let i = 0; i < 50; i++) { const mid = (lo + hi) / 2; if (smoothstep(mid) < a) lo = mid; else hi = mid; }
      return ((lo + hi) / 2) * (numFrames - 1);
    });
    return { path, times };
  }

  /**
   * One `boxes` entry sampled as parse_trajectory does.
   * Returns {boxes: F x [x0, y0, x1, y1], knots: [{x, y, t}], curve: [[x, y]]}: the knots are where the
   * box centre is at their time (the file's points moved so that the first is the box centre), and the
   * curve runs through every knot (`curveTimes`: each vertex's place along it, in the knots' `param` units).
   */
  function sampleEntry(entry, numFrames) {
    const box = entry.box;
    const c = centreOf(box);
    const kind = entry.interpolation === "spline" ? "spline" : "linear";
    const keys = entry.static ? [{ x: c[0], y: c[1], t: 0 }] : motionKeys(entry, numFrames);
    const times = keys.map((k) => k.t), values = keys.map((k) => [k.x, k.y]);
    const frames = Array.from({ length: numFrames }, (_, f) => f);
    const timed = entry.path && entry.timing && entry.timing !== "time" && !entry.static ? timedPath(entry, numFrames) : null;
    const path = timed ? timed.path : interpolateAt(times, values, frames, kind);
    const p0 = path[0];
    let boxes;
    if (entry.scale === undefined) {
      boxes = path.map((p) => [box[0] + p[0] - p0[0], box[1] + p[1] - p0[1], box[2] + p[0] - p0[0], box[3] + p[1] - p0[1]]);
    } else {
      let factors;
      if (Array.isArray(entry.scale)) {
        factors = interpolateAt(evenTimes(entry.scale.length, numFrames), entry.scale.map((s) => [s]), frames, kind).map((v) => v[0]);
      } else {
        factors = frames.map((f) => 1 + ((entry.scale - 1) * f) / (numFrames - 1));
      }
      const hw = (box[2] - box[0]) / 2, hh = (box[3] - box[1]) / 2;
      boxes = path.map((p, f) => {
        const x = c[0] + p[0] - p0[0], y = c[1] + p[1] - p0[1];
        return [x - hw * factors[f], y - hh * factors[f], x + hw * factors[f], y + hh * factors[f]];
      });
    }
    const shift = [c[0] - p0[0], c[1] - p0[1]];
    // t: the frame at which the box passes the point; param: where the point is along the drawn curve
    const knots = keys.map((k, j) => ({ x: k.x + shift[0], y: k.y + shift[1], t: timed ? timed.times[j] : k.t, param: k.t, frame: k.frame }));
    const fine = new Set(times);
    const last = keys[keys.length - 1].t;
    for (let i = 0; i <= 160; i++) fine.add((i * last) / 160);
    const ts = Array.from(fine).sort((a, b) => a - b);
    const curve = interpolateAt(times, values, ts, kind).map((p) => [p[0] + shift[0], p[1] + shift[1]]);
    return { boxes, knots, curve, curveTimes: ts };
  }

  /** The camera's box per frame, laid out on `region` [x0, y0, x1, y1] (the visible picture), as parse_trajectory. */
  function cameraBoxes(camera, numFrames, region) {
    const width = region[2] - region[0], height = region[3] - region[1];
    let pan = camera.pan === undefined ? [0, 0] : camera.pan;
    if (typeof pan === "string") {
      const amount = camera.amount === undefined ? DEFAULT_PAN_AMOUNT : camera.amount;
      pan = (DIRECTIONS[pan] || [0, 0]).map((v) => v * amount);
    }
    const zoom = camera.zoom === undefined ? 1 : camera.zoom;
    const shift = [-pan[0] * width, -pan[1] * height];
    const size0 = [(width - Math.abs(shift[0])) / Math.max(zoom, 1), (height - Math.abs(shift[1])) / Math.max(zoom, 1)];
    return Array.from({ length: numFrames }, (_, f) => {
      const p = numFrames > 1 ? f / (numFrames - 1) : 0;
      const cx = width / 2 - shift[0] / 2 + shift[0] * p, cy = height / 2 - shift[1] / 2 + shift[1] * p;
      const hw = (size0[0] / 2) * (1 + (zoom - 1) * p), hh = (size0[1] / 2) * (1 + (zoom - 1) * p);
      return [region[0] + cx - hw, region[1] + cy - hh, region[0] + cx + hw, region[1] + cy + hh];
    });
  }

  function cameraText(camera) {
    const parts = [];
    if (typeof camera.pan === "string") parts.push(`pan ${camera.pan} ${camera.amount === undefined ? DEFAULT_PAN_AMOUNT : camera.amount}`);
    else if (Array.isArray(camera.pan)) parts.push(`pan [${camera.pan.join(", ")}]`);
    if (camera.zoom !== undefined && camera.zoom !== 1) parts.push(`zoom \u00d7${camera.zoom}`);
    return "camera" + (parts.length ? ": " + parts.join(", ") : "");
  }

  // -- the model: the trajectory object and its edits --------------------------------------------

  /**
   * The trajectory object being edited, in the uploaded image's pixels, with undo and redo.
   * `bounds` [x0, y0, x1, y1]: where frame-0 boxes and points may go (the visible part of the image).
   */
  class Model {
    constructor(data, options = {}) {
      this.data = data ? clone(data) : { boxes: [] };
      if (!Array.isArray(this.data.boxes)) this.data.boxes = [];
      this.numFrames = options.numFrames || 14;
      this.bounds = options.bounds || [0, 0, 1024, 576];
      this.minSize = options.minSize || 4;
      this.undoStack = [];
      this.redoStack = [];
      this.stash = new WeakMap(); // a static box's path, given back when it moves again
    }

    get boxes() { return this.data.boxes; }

    /** The bounds rounded inwards to 0.01 pixel: coordinates clamped to them stay inside once written. */
    get limits() {
      const [x0, y0, x1, y1] = this.bounds;
      return [Math.ceil(x0 * 100 - 1e-9) / 100, Math.ceil(y0 * 100 - 1e-9) / 100,
        Math.floor(x1 * 100 + 1e-9) / 100, Math.floor(y1 * 100 + 1e-9) / 100];
    }

    text() { return JSON.stringify(this.data); }

    /** Runs `change` as one edit (one undo step); nothing is recorded when the object did not change. */
    edit(change) {
      const before = this.text();
      const result = change();
      this.commit(before);
      return result;
    }

    /** Records `before` (the text before a gesture) as an undo step, if the object changed since. */
    commit(before) {
      if (before === this.text()) return false;
      this.undoStack.push(before);
      this.redoStack = [];
      return true;
    }

    undo() {
      if (!this.undoStack.length) return false;
      this.redoStack.push(this.text());
      this.data = JSON.parse(this.undoStack.pop());
      return true;
    }

    redo() {
      if (!this.redoStack.length) return false;
      this.undoStack.push(this.text());
      this.data = JSON.parse(this.redoStack.pop());
      return true;
    }

    /** Replaces the whole object (a loaded file), as one undo step. */
    load(data) {
      this.edit(() => {
        this.data = clone(data);
        if (!Array.isArray(this.data.boxes)) this.data.boxes = [];
      });
    }

    sample(i) { return sampleEntry(this.boxes[i], this.numFrames); }

    knots(i) {
      const entry = this.boxes[i];
      return entry.static ? [] : this.sample(i).knots;
    }

    // -- boxes --
    addBox(x0, y0, x1, y1) {
      const [bx0, by0, bx1, by1] = this.limits;
      const box = [clamp(Math.min(x0, x1), bx0, bx1), clamp(Math.min(y0, y1), by0, by1),
        clamp(Math.max(x0, x1), bx0, bx1), clamp(Math.max(y0, y1), by0, by1)];
      if (box[2] - box[0] < this.minSize || box[3] - box[1] < this.minSize) return null;
      return this.edit(() => this.boxes.push({ box: box.map(r2), static: true }) - 1);
    }

    deleteBox(i) { this.edit(() => this.boxes.splice(i, 1)); }

    /** Box `i` of `original` moved by (dx, dy) with its whole path, kept inside the bounds. */
    moveBox(i, original, dx, dy) {
      const [bx0, by0, bx1, by1] = this.limits;
      const b = original.box;
      dx = clamp(dx, bx0 - b[0], bx1 - b[2]);
      dy = clamp(dy, by0 - b[1], by1 - b[3]);
      const entry = clone(original);
      entry.box = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy].map(r2);
      if (entry.path) entry.path = entry.path.map((p) => [r2(p[0] + dx), r2(p[1] + dy)]);
      if (entry.keyframes) for (const k in entry.keyframes) entry.keyframes[k] = [r2(entry.keyframes[k][0] + dx), r2(entry.keyframes[k][1] + dy)];
      this.boxes[i] = entry;
    }

    /** Box `i` of `original` with one handle (nw, n, ..., w) dragged to (x, y); its frame-0 point follows the centre. */
    resizeBox(i, original, handle, x, y) {
      const [bx0, by0, bx1, by1] = this.limits;
      let [x0, y0, x1, y1] = original.box;
      x = clamp(x, bx0, bx1);
      y = clamp(y, by0, by1);
      if (handle.includes("w")) x0 = Math.min(x, x1 - this.minSize);
      if (handle.includes("e")) x1 = Math.max(x, x0 + this.minSize);
      if (handle.includes("n")) y0 = Math.min(y, y1 - this.minSize);
      if (handle.includes("s")) y1 = Math.max(y, y0 + this.minSize);
      const entry = clone(original);
      entry.box = [x0, y0, x1, y1].map(r2);
      const [ox, oy] = centreOf(original.box), [nx, ny] = centreOf(entry.box);
      if (entry.path) entry.path[0] = [r2(entry.path[0][0] + nx - ox), r2(entry.path[0][1] + ny - oy)];
      if (entry.keyframes && entry.keyframes["0"]) entry.keyframes["0"] = [r2(entry.keyframes["0"][0] + nx - ox), r2(entry.keyframes["0"][1] + ny - oy)];
      this.boxes[i] = entry;
    }

    // -- points: knot k of box i, at (x, y) where the centre should be --
    _toFile(entry, x, y) {
      // The file's points are the centre's positions moved by path[0] - centre (zero for drawn paths).
      const keys = motionKeys(entry, this.numFrames);
      const c = centreOf(entry.box);
      return [r2(x - c[0] + keys[0].x), r2(y - c[1] + keys[0].y)];
    }

    _clampPoint(x, y) {
      const [bx0, by0, bx1, by1] = this.limits;
      return [clamp(x, bx0, bx1), clamp(y, by0, by1)];
    }

    /** Knot `k` of box `i` (from `original`) moved to (x, y): knot 0 moves the box, the others its path. */
    moveKnot(i, original, k, x, y) {
      const knots = sampleEntry(original, this.numFrames).knots;
      [x, y] = this._clampPoint(x, y);
      if (k === 0) {
        this.moveBox(i, original, x - knots[0].x, y - knots[0].y);
        const moved = this.boxes[i];
        // the rest of the path stays where it is on the picture
        const dx = moved.box[0] - original.box[0], dy = moved.box[1] - original.box[1];
        if (moved.path) moved.path = original.path.map((p, j) => (j === 0 ? [r2(p[0] + dx), r2(p[1] + dy)] : p.slice()));
        if (moved.keyframes) {
          moved.keyframes = clone(original.keyframes);
          if (moved.keyframes["0"]) moved.keyframes["0"] = [r2(original.keyframes["0"][0] + dx), r2(original.keyframes["0"][1] + dy)];
        }
        return;
      }
      const entry = clone(original);
      const point = this._toFile(entry, x, y);
      if (entry.path) entry.path[k] = point;
      else entry.keyframes[String(knots[k].frame)] = point;
      this.boxes[i] = entry;
    }

    /** A point appended to box i's motion (a static box gets a path from its centre). Returns a message. */
    appendPoint(i, x, y) {
      [x, y] = this._clampPoint(x, y);
      const entry = this.boxes[i];
      if (entry.keyframes) {
        const last = Math.max(...Object.keys(entry.keyframes).map(Number));
        if (last >= this.numFrames - 1) return "its last keyframe is at the last frame: insert points on the path instead";
        this.edit(() => { entry.keyframes[String(this.numFrames - 1)] = this._toFile(entry, x, y); });
        return `point added at frame ${this.numFrames - 1}`;
      }
      this.edit(() => {
        if (entry.static) {
          const kept = this.stash.get(entry);
          delete entry.static;
          const c = centreOf(entry.box);
          entry.path = kept && kept.path ? kept.path : [[r2(c[0]), r2(c[1])]];
          if (kept && kept.interpolation) entry.interpolation = kept.interpolation;
        }
        entry.path.push(this._toFile(entry, x, y));
      });
      return `path point ${entry.path.length - 1} added`;
    }

    /** A point inserted between knots k and k + 1 of box i. Returns a message. */
    insertPoint(i, k, x, y) {
      [x, y] = this._clampPoint(x, y);
      const entry = this.boxes[i];
      if (entry.path) {
        this.edit(() => entry.path.splice(k + 1, 0, this._toFile(entry, x, y)));
        return `point inserted: the path's ${entry.path.length} points are spread evenly over the frames`;
      }
      const knots = this.knots(i);
      const frame = Math.round((knots[k].t + knots[k + 1].t) / 2);
      if (frame <= knots[k].t || frame >= knots[k + 1].t) return `no free frame between frames ${knots[k].t} and ${knots[k + 1].t}`;
      this.edit(() => { entry.keyframes[String(frame)] = this._toFile(entry, x, y); });
      return `keyframe inserted at frame ${frame}`;
    }

    /** Knot k of box i removed; removing the first starts the box at the next one; one point left: static. */
    deletePoint(i, k) {
      const original = clone(this.boxes[i]);
      const knots = this.knots(i);
      if (knots.length < 2) return "this box has no path points";
      this.edit(() => {
        if (k === 0) this.moveKnot(i, original, 0, knots[1].x, knots[1].y);
        const entry = this.boxes[i];
        if (entry.path) entry.path.splice(k === 0 ? 1 : k, 1);
        else delete entry.keyframes[String(knots[k === 0 ? 1 : k].frame)];
        const remaining = entry.path ? entry.path.length : Object.keys(entry.keyframes).filter((f) => f !== "0").length + 1;
        if (remaining < 2) {
          delete entry.path;
          delete entry.keyframes;
          delete entry.interpolation;
          delete entry.timing;
          entry.static = true;
        }
      });
      return "point deleted";
    }

    /** Box i static (its content stays still; its path is kept here for when it moves again) or moving. */
    setStatic(i, value) {
      const entry = this.boxes[i];
      if (value === Boolean(entry.static)) return;
      this.edit(() => {
        if (value) {
          this.stash.set(entry, { path: entry.path, keyframes: entry.keyframes, interpolation: entry.interpolation, timing: entry.timing });
          delete entry.path;
          delete entry.keyframes;
          delete entry.interpolation;
          delete entry.timing;
          entry.static = true;
        } else {
          const kept = this.stash.get(entry);
          if (!kept || (!kept.path && !kept.keyframes)) return;
          delete entry.static;
          for (const key of ["path", "keyframes", "interpolation", "timing"]) if (kept[key] !== undefined) entry[key] = kept[key];
        }
      });
    }

    setLabel(i, label) {
      this.edit(() => {
        if (label) this.boxes[i].label = label;
        else delete this.boxes[i].label;
      });
    }

    /** How box i travels along its path: "time" (its points evenly spread in time), "speed" or "ease". */
    setTiming(i, timing) {
      const entry = this.boxes[i];
      if (!entry.path) return;
      this.edit(() => {
        if (timing && timing !== "time") entry.timing = timing;
        else delete entry.timing;
      });
    }

    setSmooth(i, smooth) {
      const entry = this.boxes[i];
      if (entry.static) return;
      this.edit(() => {
        if (smooth) entry.interpolation = "spline";
        else delete entry.interpolation;
      });
    }

    /** Knot k of box i reached at `frame` (0 < frame < F): the box's motion becomes keyframes. Returns a message. */
    setKeyframe(i, k, frame) {
      const entry = this.boxes[i];
      const knots = this.knots(i);
      frame = Math.round(Number(frame));
      if (!(k > 0 && k < knots.length)) return "choose a point after the first";
      const rounded = knots.map((n) => Math.round(n.t));
      rounded[k] = frame;
      for (let j = 1; j < rounded.length; j++) {
        if (!(rounded[j] > rounded[j - 1])) return `frame ${frame}: the points must come in order, each on a later frame`;
      }
      if (frame >= this.numFrames) return `frame ${frame}: the video has frames 0..${this.numFrames - 1}`;
      this.edit(() => {
        const file = motionKeys(entry, this.numFrames);
        const keyframes = {};
        file.forEach((p, j) => { if (!p.implicit) keyframes[String(rounded[j])] = [r2(p.x), r2(p.y)]; });
        delete entry.path;
        delete entry.timing; // keyframes give their own frames
        entry.keyframes = keyframes;
      });
      return `point ${k} at frame ${frame}`;
    }

    /** The camera's {pan, amount, zoom}; null or an empty object: no camera motion. */
    setCamera(camera) {
      this.edit(() => {
        if (camera && Object.keys(camera).length) this.data.camera = camera;
        else delete this.data.camera;
      });
    }

    // -- hit testing, in the file's pixels with a tolerance `tol` --
    /** What is under (x, y): {kind: "handle"|"knot"|"segment"|"box", i, k?, handle?} or null. */
    hit(x, y, tol, selected) {
      const near = (px, py) => Math.abs(px - x) <= tol && Math.abs(py - y) <= tol;
      if (selected !== null && selected !== undefined && this.boxes[selected]) {
        const b = this.boxes[selected].box;
        const pos = handlePositions(b);
        for (const h of HANDLES) if (near(pos[h][0], pos[h][1])) return { kind: "handle", i: selected, handle: h };
      }
      const order = this.boxes.map((_, i) => i).filter((i) => i !== selected);
      if (selected !== null && selected !== undefined && this.boxes[selected]) order.push(selected);
      for (let n = order.length - 1; n >= 0; n--) {
        const i = order[n];
        const knots = this.knots(i);
        for (let k = knots.length - 1; k >= 0; k--) if (near(knots[k].x, knots[k].y)) return { kind: "knot", i, k };
      }
      for (let n = order.length - 1; n >= 0; n--) {
        const i = order[n];
        const knots = this.knots(i);
        const { curve, curveTimes } = this.sample(i);
        for (let j = 0; j + 1 < curve.length; j++) {
          if (segmentDistance(x, y, curve[j], curve[j + 1]) <= tol) {
            const t = (curveTimes[j] + curveTimes[j + 1]) / 2;
            let k = 0;
            while (k + 2 < knots.length && knots[k + 1].param <= t) k++;
            return { kind: "segment", i, k };
          }
        }
      }
      let best = null;
      this.boxes.forEach((entry, i) => {
        const b = entry.box;
        if (x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]) {
          const area = (b[2] - b[0]) * (b[3] - b[1]);
          if (!best || area < best.area || (area === best.area && i === selected)) best = { kind: "box", i, area };
        }
      });
      return best ? { kind: "box", i: best.i } : null;
    }
  }

  function handlePositions(b) {
    const cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
    return { nw: [b[0], b[1]], n: [cx, b[1]], ne: [b[2], b[1]], e: [b[2], cy], se: [b[2], b[3]], s: [cx, b[3]], sw: [b[0], b[3]], w: [b[0], cy] };
  }

  function segmentDistance(x, y, a, b) {
    const dx = b[0] - a[0], dy = b[1] - a[1];
    const len = dx * dx + dy * dy;
    const s = len ? clamp(((x - a[0]) * dx + (y - a[1]) * dy) / len, 0, 1) : 0;
    return Math.hypot(x - a[0] - s * dx, y - a[1] - s * dy);
  }

  // -- the view: canvas, side panel, mouse and keyboard ------------------------------------------

  const HELP = [
    ["drag on the picture", "draw a box"],
    ["click (Shift+click inside a box)", "add a point to the selected box's path"],
    ["click a box", "select it; drag it to move it with its path"],
    ["drag a handle", "resize the selected box"],
    ["drag a point", "move it (the first point moves the box)"],
    ["move over a path", "the frame of the nearest tick"],
    ["double-click the path", "insert a point there"],
    ["right-click a point, or Delete", "delete the point (Delete with no point chosen: the box)"],
    ["Ctrl+Z / Ctrl+Shift+Z or Ctrl+Y", "undo / redo"],
    ["arrow keys (Shift: by 10)", "move the selected point, else the box, by one pixel"],
    ["Esc", "select nothing"],
  ];

  const PANEL = `
<div class="sgi2v-editor-main">
  <canvas class="sgi2v-canvas" tabindex="0" aria-label="trajectory editor"></canvas>
  <div class="sgi2v-status" role="status">Upload an image to start.</div>
</div>
<div class="sgi2v-side">
  <div class="sgi2v-row">
    <button type="button" data-action="undo" title="Ctrl+Z">Undo</button>
    <button type="button" data-action="redo" title="Ctrl+Shift+Z or Ctrl+Y">Redo</button>
    <button type="button" data-action="delete" title="Delete">Delete</button>
    <button type="button" data-action="clear">Clear all</button>
    <button type="button" data-action="download">Download trajectory</button>
  </div>
  <fieldset class="sgi2v-box"><legend>Selected box</legend>
    <div class="sgi2v-selected">none: click a box, or drag to draw one</div>
    <label>Label <input type="text" data-field="label" maxlength="60" disabled></label>
    <label><input type="checkbox" data-field="static" disabled> Static: its content stays still</label>
    <label><input type="checkbox" data-field="smooth" disabled> Smooth path (spline)</label>
    <label class="sgi2v-timing" hidden>Timing <select data-field="timing" disabled><option value="time">points evenly in time</option>
      <option value="speed">constant speed</option><option value="ease">ease in and out</option></select></label>
    <label>Selected point reached at frame <input type="number" data-field="frame" min="1" step="1" disabled></label>
  </fieldset>
  <fieldset class="sgi2v-camera"><legend>Camera</legend>
    <label>Pan <select data-field="pan"><option value="none">none</option><option>left</option><option>right</option>
      <option>up</option><option>down</option><option value="custom" disabled>[dx, dy] from the file</option></select></label>
    <label>Pan amount (fraction of the picture) <input type="number" data-field="amount" min="0.01" max="0.99" step="0.01" value="0.25"></label>
    <label>Zoom by the last frame (&gt;1 in, &lt;1 out) <input type="number" data-field="zoom" min="0.1" max="10" step="0.05" value="1"></label>
  </fieldset>
  <details class="sgi2v-help" open><summary>Mouse and keys</summary><table>
    ${HELP.map(([k, v]) => `<tr><td><b>${k}</b></td><td>${v}</td></tr>`).join("")}</table>
    <div>Ticks across a path: the box centre at each frame. Arrowheads: the direction. The camera: a white
    frame with a camera symbol, dashed at frame 0, solid at the last frame; its arrow is where the scene moves
    (against the camera).</div></details>
</div>`;

  const CSS = `
.sgi2v-editor { display: flex; flex-direction: column; gap: 6px; }
.sgi2v-editor-main { width: 100%; }
.sgi2v-side { font-size: 13px; display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.sgi2v-side > * { flex: 1 1 200px; }
.sgi2v-side > .sgi2v-row { flex: 1 1 100%; }
.sgi2v-canvas { width: 100%; display: block; background: #222; cursor: crosshair; border-radius: 4px; outline: none; touch-action: none; }
.sgi2v-status { min-height: 1.4em; font-size: 13px; margin-top: 4px; }
.sgi2v-status.error { color: #c62828; }
.sgi2v-side fieldset { border: 1px solid #8884; border-radius: 4px; padding: 4px 8px; display: flex; flex-direction: column; gap: 4px; }
.sgi2v-side label { display: flex; gap: 6px; align-items: center; justify-content: space-between; }
.sgi2v-side input[type=text], .sgi2v-side input[type=number], .sgi2v-side select { width: 8em; padding: 1px 4px; }
.sgi2v-side input[type=checkbox] { appearance: auto; -webkit-appearance: checkbox; width: 16px; height: 16px; }
.sgi2v-row { display: flex; gap: 4px; flex-wrap: wrap; }
.sgi2v-row button { padding: 2px 8px; border: 1px solid #8886; border-radius: 4px; }
.sgi2v-help { flex: 1 1 100% !important; }
.sgi2v-help table { font-size: 12px; border-collapse: collapse; }
.sgi2v-help td { padding: 1px 4px; vertical-align: top; }
`;

  function rgb(c, a = 1) { return `rgba(${c[0]},${c[1]},${c[2]},${a})`; }

  /**
   * Builds the editor in `element`. options: {onChange(text)} called after each finished edit with the
   * trajectory object as JSON text. Returns the editor: setScene(scene), setTrajectory(text), model, text().
   * A scene is {image (URL), source [w, h], size [W, H], crop [x0, y0, x1, y1], placed [x0, y0, x1, y1],
   * num_frames}: the picture as the model gets it and how the upload's pixels map onto it.
   */
  function mount(element, options = {}) {
    if (!document.getElementById("sgi2v-editor-css")) {
      const style = document.createElement("style");
      style.id = "sgi2v-editor-css";
      style.textContent = CSS;
      document.head.appendChild(style);
    }
    element.classList.add("sgi2v-editor");
    element.innerHTML = PANEL;
    const canvas = element.querySelector("canvas");
    const ctx = canvas.getContext("2d");
    const statusLine = element.querySelector(".sgi2v-status");
    const field = (name) => element.querySelector(`[data-field="${name}"]`);
    const model = new Model(null);
    const image = new Image();
    let scene = null;
    let selected = null, selectedKnot = null, gesture = null, hover = null;
    let lastSent = null;

    const editor = { model, element, canvas };

    // -- coordinates: the file's pixels (source) <-> the canvas's CSS pixels --
    function scale() {
      const w = canvas.clientWidth || 1;
      return w / scene.size[0];
    }
    function toView(x, y) {
      const k = scale(), sx = (scene.placed[2] - scene.placed[0]) / (scene.crop[2] - scene.crop[0]);
      const sy = (scene.placed[3] - scene.placed[1]) / (scene.crop[3] - scene.crop[1]);
      return [((x - scene.crop[0]) * sx + scene.placed[0]) * k, ((y - scene.crop[1]) * sy + scene.placed[1]) * k];
    }
    function toSource(X, Y) {
      const k = scale(), sx = (scene.placed[2] - scene.placed[0]) / (scene.crop[2] - scene.crop[0]);
      const sy = (scene.placed[3] - scene.placed[1]) / (scene.crop[3] - scene.crop[1]);
      return [(X / k - scene.placed[0]) / sx + scene.crop[0], (Y / k - scene.placed[1]) / sy + scene.crop[1]];
    }
    function tolerance() { // 8 CSS pixels in the file's pixels
      const [x0] = toSource(0, 0), [x1] = toSource(8, 0);
      return Math.abs(x1 - x0);
    }
    function eventPoint(event) {
      const r = canvas.getBoundingClientRect();
      return toSource(event.clientX - r.left, event.clientY - r.top);
    }

    const plural = (n, word, many = word + "s") => `${n} ${n === 1 ? word : many}`;

    function say(message, error = false) {
      statusLine.textContent = message;
      statusLine.classList.toggle("error", error);
    }
    function name(i) {
      const label = model.boxes[i] && model.boxes[i].label;
      return `box ${i + 1} (${COLOR_NAMES[i % COLOR_NAMES.length]}${label ? ", " + label : ""})`;
    }

    function changed() {
      const text = model.text();
      if (text !== lastSent) {
        lastSent = text;
        if (options.onChange) options.onChange(text);
      }
      hover = null; // what is under the mouse is looked up again at its next move
      if (selected !== null && selected >= model.boxes.length) selected = null;
      if (selected === null || selectedKnot >= model.knots(selected).length) selectedKnot = null;
      syncPanel();
      draw();
    }

    // -- side panel --
    function syncPanel() {
      const entry = selected !== null ? model.boxes[selected] : null;
      element.querySelector(".sgi2v-selected").textContent = entry
        ? `${name(selected)}: ${entry.static ? "static" : plural(model.knots(selected).length - 1, "path point")}`
        : "none: click a box, or drag to draw one";
      for (const f of ["label", "static", "smooth"]) field(f).disabled = !entry;
      field("label").value = entry ? entry.label || "" : "";
      field("static").checked = Boolean(entry && entry.static);
      field("smooth").checked = Boolean(entry && entry.interpolation === "spline");
      field("smooth").disabled = !entry || Boolean(entry.static);
      element.querySelector(".sgi2v-timing").hidden = !(scene && scene.timings && scene.timings.length);
      field("timing").disabled = !entry || !entry.path;
      field("timing").value = entry && entry.timing ? entry.timing : "time";
      const knot = entry && selectedKnot !== null ? model.knots(selected)[selectedKnot] : null;
      field("frame").disabled = !knot || selectedKnot === 0;
      field("frame").max = String(model.numFrames - 1);
      field("frame").value = knot ? String(Math.round(knot.t * 100) / 100) : "";
      const camera = model.data.camera || {};
      const pan = field("pan");
      pan.value = typeof camera.pan === "string" ? camera.pan : Array.isArray(camera.pan) ? "custom" : "none";
      field("amount").disabled = typeof camera.pan !== "string";
      field("amount").value = String(camera.amount === undefined ? DEFAULT_PAN_AMOUNT : camera.amount);
      field("zoom").value = String(camera.zoom === undefined ? 1 : camera.zoom);
    }

    function readCamera() {
      const camera = {};
      const current = model.data.camera || {};
      const pan = field("pan").value;
      if (pan === "custom") camera.pan = current.pan;
      else if (pan !== "none") {
        camera.pan = pan;
        const amount = Number(field("amount").value);
        if (!(amount > 0 && amount < 1)) return say(`pan amount: expected a fraction in (0, 1), got ${field("amount").value}`, true);
        camera.amount = amount;
      }
      const zoom = Number(field("zoom").value);
      if (!(zoom >= 0.1 && zoom <= 10)) return say(`zoom: expected a factor within 0.1..10, got ${field("zoom").value}`, true);
      if (zoom !== 1) camera.zoom = zoom;
      model.setCamera(camera);
      say(Object.keys(camera).length ? cameraText(camera) : "No camera motion.");
      changed();
    }

    element.querySelector('[data-action="undo"]').addEventListener("click", () => act("undo"));
    element.querySelector('[data-action="redo"]').addEventListener("click", () => act("redo"));
    element.querySelector('[data-action="delete"]').addEventListener("click", () => act("delete"));
    element.querySelector('[data-action="clear"]').addEventListener("click", () => {
      model.edit(() => { model.data = { boxes: [] }; });
      selected = selectedKnot = null;
      say("Cleared: drag on the picture to draw a box.");
      changed();
    });
    element.querySelector('[data-action="download"]').addEventListener("click", () => {
      const blob = new Blob([JSON.stringify(model.data, null, 2) + "\n"], { type: "application/json" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "trajectory.json";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    });
    field("label").addEventListener("change", () => {
      if (selected === null) return;
      model.setLabel(selected, field("label").value.trim());
      changed();
    });
    field("static").addEventListener("change", () => {
      if (selected === null) return;
      model.setStatic(selected, field("static").checked);
      if (!field("static").checked && model.boxes[selected].static) say(`${name(selected)}: click on the picture to give it a path.`);
      changed();
    });
    field("smooth").addEventListener("change", () => {
      if (selected === null) return;
      model.setSmooth(selected, field("smooth").checked);
      changed();
    });
    field("timing").addEventListener("change", () => {
      if (selected === null) return;
      model.setTiming(selected, field("timing").value);
      changed();
    });
    field("frame").addEventListener("change", () => {
      if (selected === null || selectedKnot === null) return;
      const message = model.setKeyframe(selected, selectedKnot, field("frame").value);
      say(message, !message.startsWith("point"));
      changed();
    });
    for (const f of ["pan", "amount", "zoom"]) field(f).addEventListener("change", readCamera);

    /** The selected point (else box) moved by `step` pixels of the upload, as one edit. */
    function nudge(key, step) {
      const [dx, dy] = { arrowleft: [-step, 0], arrowright: [step, 0], arrowup: [0, -step], arrowdown: [0, step] }[key];
      const original = clone(model.boxes[selected]);
      model.edit(() => {
        if (selectedKnot !== null) {
          const knot = model.knots(selected)[selectedKnot];
          model.moveKnot(selected, original, selectedKnot, knot.x + dx, knot.y + dy);
        } else model.moveBox(selected, original, dx, dy);
      });
      changed();
    }

    function act(action) {
      if (action === "undo" || action === "redo") {
        const done = action === "undo" ? model.undo() : model.redo();
        say(done ? (action === "undo" ? "Undone." : "Redone.") : `Nothing to ${action}.`);
      } else if (action === "delete") {
        if (selected === null) say("Select a box or a point first.");
        else if (selectedKnot !== null) {
          say(model.deletePoint(selected, selectedKnot));
          selectedKnot = null;
        } else {
          const was = name(selected);
          model.deleteBox(selected);
          selected = null;
          say(`${was} deleted; the boxes after it are renumbered.`);
        }
      }
      changed();
    }

    // -- mouse --
    canvas.addEventListener("contextmenu", (event) => {
      event.preventDefault();
      if (!scene) return;
      const [x, y] = eventPoint(event);
      const h = model.hit(x, y, tolerance(), selected);
      if (h && h.kind === "knot") {
        selected = h.i;
        say(model.deletePoint(h.i, h.k));
        selectedKnot = null;
        changed();
      }
    });

    canvas.addEventListener("pointerdown", (event) => {
      if (!scene || event.button !== 0) return;
      canvas.focus();
      canvas.setPointerCapture(event.pointerId);
      const [x, y] = eventPoint(event);
      const h = event.shiftKey ? null : model.hit(x, y, tolerance(), selected);
      const before = model.text();
      gesture = { start: [x, y], at: [x, y], before, hit: h, moved: false, shift: event.shiftKey,
        original: h ? clone(model.boxes[h.i]) : null };
      if (h && h.kind !== "segment") {
        if (h.i !== selected) selectedKnot = null;
        selected = h.i;
        if (h.kind === "knot") selectedKnot = h.k;
        else if (h.kind === "box") selectedKnot = null;
        syncPanel();
        draw();
      }
    });

    canvas.addEventListener("pointermove", (event) => {
      if (!scene) return;
      const [x, y] = eventPoint(event);
      if (!gesture) {
        const h = model.hit(x, y, tolerance(), selected);
        hover = h;
        if (h && h.kind === "segment") { // the frame whose tick is nearest the mouse
          const boxes = model.sample(h.i).boxes;
          let best = 0, distance = Infinity;
          boxes.forEach((b, f) => {
            const d = Math.hypot((b[0] + b[2]) / 2 - x, (b[1] + b[3]) / 2 - y);
            if (d < distance) { distance = d; best = f; }
          });
          hover.frame = best;
        }
        canvas.style.cursor = !h ? "crosshair" : h.kind === "handle" ? `${h.handle}-resize` : h.kind === "segment" ? "copy" : "move";
        draw();
        return;
      }
      gesture.at = [x, y];
      const [dx, dy] = [x - gesture.start[0], y - gesture.start[1]];
      const far = Math.hypot(...toView(x, y).map((v, d) => v - toView(...gesture.start)[d])) > 4;
      if (!gesture.moved && !far) return;
      gesture.moved = true;
      const h = gesture.hit;
      if (h && h.kind === "handle") model.resizeBox(h.i, gesture.original, h.handle, x, y);
      else if (h && h.kind === "knot") model.moveKnot(h.i, gesture.original, h.k, x, y);
      else if (h && h.kind === "box") model.moveBox(h.i, gesture.original, dx, dy);
      draw();
    });

    canvas.addEventListener("pointerup", (event) => {
      if (!gesture) return;
      const g = gesture;
      gesture = null;
      const [x, y] = g.at;
      const h = g.hit;
      if (g.moved && h && h.kind !== "segment") {
        if (model.commit(g.before)) say(h.kind === "handle" ? `${name(h.i)} resized.` : h.kind === "knot"
          ? (h.k === 0 ? `${name(h.i)} moved; its path stays.` : `${name(h.i)}: point ${h.k} moved.`) : `${name(h.i)} moved with its path.`);
      } else if (g.moved) {
        const i = model.addBox(g.start[0], g.start[1], x, y);
        if (i === null) say("That box is too small: drag further.", true);
        else {
          selected = i;
          selectedKnot = null;
          say(`${name(i)} drawn: click where its centre should go (the last click: the last frame).`);
        }
      } else if (!h || g.shift) {
        if (selected === null) say("Drag on the picture to draw a box, or click a box to select it.");
        else {
          say(`${name(selected)}: ${model.appendPoint(selected, x, y)}.`);
          selectedKnot = model.knots(selected).length - 1;
        }
      } else if (h.kind === "segment") {
        selected = h.i;
        say(`${name(h.i)}: double-click on its path to insert a point there.`);
      } else if (h.kind === "box") say(`${name(h.i)} selected: drag to move, click outside to add path points.`);
      else if (h.kind === "knot") say(`${name(h.i)}: point ${h.k} at frame ${Math.round(model.knots(h.i)[h.k].t * 100) / 100}.`);
      changed();
    });

    canvas.addEventListener("dblclick", (event) => {
      if (!scene) return;
      const [x, y] = eventPoint(event);
      const h = model.hit(x, y, tolerance(), selected);
      if (h && h.kind === "segment") {
        // the two clicks of the double click added nothing (they were on the path): insert there
        selected = h.i;
        say(`${name(h.i)}: ${model.insertPoint(h.i, h.k, x, y)}.`);
        selectedKnot = h.k + 1;
        changed();
      }
    });

    element.addEventListener("keydown", (event) => { // anywhere in the editor but its text and number fields
      if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
      const key = event.key.toLowerCase();
      const mod = event.ctrlKey || event.metaKey;
      if (mod && key === "z") act(event.shiftKey ? "redo" : "undo");
      else if (mod && key === "y") act("redo");
      else if (key === "delete" || key === "backspace") act("delete");
      else if (key === "escape") { selected = selectedKnot = null; say("Nothing selected."); changed(); }
      else if (key.startsWith("arrow") && selected !== null) nudge(key, event.shiftKey ? 10 : 1);
      else return;
      event.preventDefault();
    });

    // -- drawing --
    function draw() {
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth || 640;
      const height = scene ? (width * scene.size[1]) / scene.size[0] : width * 0.5625;
      canvas.style.height = `${height}px`;
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio);
        canvas.height = Math.round(height * ratio);
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      if (!scene) return;
      if (image.complete && image.naturalWidth) {
        ctx.imageSmoothingEnabled = width < 1.5 * scene.size[0]; // small outputs enlarged: show their pixels
        ctx.drawImage(image, 0, 0, width, height);
      }
      const F = model.numFrames;
      if (model.data.camera) drawCamera(model.data.camera, F);
      model.boxes.forEach((entry, i) => drawBox(entry, i, F));
      if (gesture && gesture.moved && !gesture.hit) {
        const [a, b] = [toView(...gesture.start), toView(...gesture.at)];
        ctx.setLineDash([5, 4]);
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5;
        ctx.strokeRect(a[0], a[1], b[0] - a[0], b[1] - a[1]);
        ctx.setLineDash([]);
      }
    }

    function rect(b) {
      const [x0, y0] = toView(b[0], b[1]), [x1, y1] = toView(b[2], b[3]);
      return [x0, y0, x1 - x0, y1 - y0];
    }

    function tag(text, x, y, color) {
      ctx.font = "bold 12px sans-serif";
      const w = ctx.measureText(text).width + 8;
      ctx.fillStyle = "rgba(0,0,0,0.65)";
      ctx.fillRect(x, y - 16, w, 16);
      ctx.fillStyle = color;
      ctx.fillText(text, x + 4, y - 4);
    }

    function arrowHead(x, y, angle, size, color) {
      ctx.save();
      ctx.translate(x, y);
      ctx.rotate(angle);
      ctx.beginPath();
      ctx.moveTo(size, 0);
      ctx.lineTo(-size * 0.8, size * 0.65);
      ctx.lineTo(-size * 0.4, 0);
      ctx.lineTo(-size * 0.8, -size * 0.65);
      ctx.closePath();
      ctx.fillStyle = color;
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.lineWidth = 1;
      ctx.fill();
      ctx.stroke();
      ctx.restore();
    }

    function drawBox(entry, i, F) {
      const color = PALETTE[i % PALETTE.length];
      const s = sampleEntry(entry, F);
      const isSel = i === selected;
      const [x, y, w, h] = rect(entry.box);
      ctx.lineWidth = isSel ? 3 : 2;
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.strokeRect(x, y, w, h);
      ctx.strokeStyle = rgb(color);
      ctx.lineWidth = isSel ? 2.5 : 1.5;
      ctx.strokeRect(x, y, w, h);
      ctx.fillStyle = rgb(color, isSel ? 0.12 : 0.06);
      ctx.fillRect(x, y, w, h);
      tag(`${i + 1}${entry.label ? " " + entry.label : ""}${entry.static ? " \u2693 static" : ""}`, x, y < 18 ? y + 18 : y, rgb(color));
      if (!entry.static) {
        const last = s.boxes[F - 1];
        ctx.setLineDash([4, 3]);
        ctx.strokeStyle = rgb(color, 0.9);
        ctx.lineWidth = 1;
        ctx.strokeRect(...rect(last));
        ctx.setLineDash([]);
        const pts = s.curve.map((p) => toView(p[0], p[1]));
        for (const [width, style] of [[4, "rgba(0,0,0,0.55)"], [2, rgb(color)]]) {
          ctx.beginPath();
          pts.forEach((p, j) => (j ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
          ctx.lineWidth = width;
          ctx.strokeStyle = style;
          ctx.stroke();
        }
        // a tick across the path at each frame's centre position
        const centres = s.boxes.map((b) => toView((b[0] + b[2]) / 2, (b[1] + b[3]) / 2));
        centres.forEach((p, f) => {
          const a = centres[Math.max(0, f - 1)], b = centres[Math.min(F - 1, f + 1)];
          let nx = -(b[1] - a[1]), ny = b[0] - a[0];
          const len = Math.hypot(nx, ny);
          if (len < 1e-6) return;
          nx /= len; ny /= len;
          ctx.beginPath();
          ctx.moveTo(p[0] - nx * 5, p[1] - ny * 5);
          ctx.lineTo(p[0] + nx * 5, p[1] + ny * 5);
          ctx.lineWidth = 1.5;
          ctx.strokeStyle = "#fff";
          ctx.stroke();
        });
        // arrowheads: half-way between points, and at the end
        const knots = s.knots.map((k) => toView(k.x, k.y));
        for (let k = 0; k + 1 < knots.length; k++) {
          const t = (s.knots[k].param + s.knots[k + 1].param) / 2;
          const j = nearestIndex(s.curveTimes, t);
          const a = pts[Math.max(0, j - 1)], b = pts[Math.min(pts.length - 1, j + 1)];
          if (Math.hypot(b[0] - a[0], b[1] - a[1]) > 1) arrowHead(pts[j][0], pts[j][1], Math.atan2(b[1] - a[1], b[0] - a[0]), 7, rgb(color));
        }
        if (pts.length > 1) {
          const a = pts[pts.length - 2], b = pts[pts.length - 1];
          const angle = Math.atan2(b[1] - a[1], b[0] - a[0]); // just past the last point, which is drawn over the end
          if (Math.hypot(b[0] - a[0], b[1] - a[1]) > 0.01) arrowHead(b[0] + 14 * Math.cos(angle), b[1] + 14 * Math.sin(angle), angle, 8, rgb(color));
        }
        knots.forEach((p, k) => {
          const r = isSel && k === selectedKnot ? 7 : 5;
          ctx.beginPath();
          if (k === 0) ctx.rect(p[0] - r, p[1] - r, 2 * r, 2 * r);
          else ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
          ctx.fillStyle = rgb(color);
          ctx.fill();
          ctx.lineWidth = isSel && k === selectedKnot ? 2.5 : 1.5;
          ctx.strokeStyle = "#fff";
          ctx.stroke();
          const hovering = hover && hover.kind === "knot" && hover.i === i && hover.k === k;
          if (isSel || hovering || s.knots[k].frame !== null) {
            ctx.font = "11px sans-serif";
            ctx.fillStyle = "#fff";
            ctx.strokeStyle = "rgba(0,0,0,0.8)";
            ctx.lineWidth = 3;
            const label = `f${Math.round(s.knots[k].t * 10) / 10}`;
            ctx.strokeText(label, p[0] + 8, p[1] - 6);
            ctx.fillText(label, p[0] + 8, p[1] - 6);
          }
        });
      }
      if (hover && hover.kind === "segment" && hover.i === i && !entry.static) {
        const b = s.boxes[hover.frame];
        const [hx, hy] = toView((b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        ctx.beginPath();
        ctx.arc(hx, hy, 4, 0, 2 * Math.PI);
        ctx.fillStyle = "#fff";
        ctx.fill();
        tag(`frame ${hover.frame}`, hx + 8, hy - 6, "#fff");
      }
      if (isSel) {
        const pos = handlePositions(entry.box);
        for (const hname of HANDLES) {
          const [hx, hy] = toView(...pos[hname]);
          ctx.fillStyle = "#fff";
          ctx.strokeStyle = "#000";
          ctx.lineWidth = 1;
          ctx.fillRect(hx - 4, hy - 4, 8, 8);
          ctx.strokeRect(hx - 4, hy - 4, 8, 8);
        }
      }
    }

    function nearestIndex(times, t) {
      let j = 0;
      while (j + 1 < times.length && times[j + 1] <= t) j++;
      return j;
    }

    function cameraIcon(x, y) {
      // a small film camera: body, lens and two reels
      ctx.save();
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.rect(x, y + 5, 14, 9);
      ctx.moveTo(x + 14, y + 9.5);
      ctx.lineTo(x + 20, y + 6);
      ctx.lineTo(x + 20, y + 13);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
      for (const cx of [x + 4, x + 10]) {
        ctx.beginPath();
        ctx.arc(cx, y + 2.5, 2.5, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      }
      ctx.restore();
    }

    function drawCamera(camera, F) {
      const region = [scene.placed[0], scene.placed[1], scene.placed[2], scene.placed[3]];
      const boxes = cameraBoxes(camera, F, region); // in the prepared picture's pixels
      const k = scale();
      const view = (b) => [b[0] * k, b[1] * k, (b[2] - b[0]) * k, (b[3] - b[1]) * k];
      const first = view(boxes[0]), last = view(boxes[F - 1]);
      for (const [outline, dash] of [[first, [10, 6]], [last, []]]) {
        ctx.setLineDash(dash);
        ctx.lineWidth = 3;
        ctx.strokeStyle = "rgba(0,0,0,0.7)";
        ctx.strokeRect(...outline);
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = "#fff";
        ctx.strokeRect(...outline);
      }
      ctx.setLineDash([]);
      const c0 = [first[0] + first[2] / 2, first[1] + first[3] / 2], c1 = [last[0] + last[2] / 2, last[1] + last[3] / 2];
      if (Math.hypot(c1[0] - c0[0], c1[1] - c0[1]) > 2) {
        ctx.beginPath();
        ctx.moveTo(...c0);
        ctx.lineTo(...c1);
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#fff";
        ctx.stroke();
        arrowHead(c1[0], c1[1], Math.atan2(c1[1] - c0[1], c1[0] - c0[0]), 9, "#fff");
      }
      const lx = last[0] + 4, ly = last[1] + 4;
      ctx.fillStyle = "rgba(0,0,0,0.65)";
      ctx.font = "bold 12px sans-serif";
      const text = cameraText(camera);
      ctx.fillRect(lx, ly, ctx.measureText(text).width + 32, 20);
      cameraIcon(lx + 4, ly + 3);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, lx + 28, ly + 14);
    }

    // -- from the page --
    /** A new picture, size or frame count; the trajectory is kept unless the scene brings one. */
    editor.setScene = function (value) {
      const next = typeof value === "string" ? (value ? JSON.parse(value) : null) : value;
      if (!next) return;
      if (!next.image) {  // no picture (e.g. an upload that failed): only the message changes
        if (next.message) say(next.message, Boolean(next.error));
        return;
      }
      const newImage = !scene || next.image !== scene.image;
      scene = next;
      model.numFrames = Math.max(2, scene.num_frames | 0);
      const sx = (scene.placed[2] - scene.placed[0]) / (scene.crop[2] - scene.crop[0]);
      model.minSize = 4 / sx;
      model.bounds = scene.bounds || [Math.max(0, scene.crop[0]), Math.max(0, scene.crop[1]),
        Math.min(scene.source[0], scene.crop[2]), Math.min(scene.source[1], scene.crop[3])];
      if (model.data.num_frames !== undefined) model.data.num_frames = model.numFrames;
      if (newImage && scene.image) {
        image.onload = () => draw();
        image.src = scene.image;
      }
      if (scene.message) say(scene.message, Boolean(scene.error));
      changed();
    };

    /** The trajectory object as JSON text (a loaded file, or "" for none), replacing what is drawn as one edit. */
    editor.setTrajectory = function (text) {
      if (text === lastSent) return;
      const data = text ? JSON.parse(text) : { boxes: [] };
      model.load(data);
      lastSent = model.text();
      selected = selectedKnot = null;
      const count = model.boxes.length;
      say(count || model.data.camera ? `Showing ${plural(count, "box", "boxes")}${model.data.camera ? " and the camera" : ""} `
        + "(Ctrl+Z brings back what was drawn before)." : "Nothing drawn yet: drag on the picture to draw a box.");
      changed();
    };

    editor.text = () => model.text();
    editor.select = (i, k = null) => { selected = i; selectedKnot = k; changed(); };
    /** Where the file's pixel (x, y) is on the page (client coordinates), for tests and tools. */
    editor.clientPoint = (x, y) => {
      const r = canvas.getBoundingClientRect();
      const [X, Y] = toView(x, y);
      return [r.left + X, r.top + Y];
    };
    window.addEventListener("resize", () => draw());
    draw();
    return editor;
  }

  return { PALETTE, COLOR_NAMES, HELP, Model, sampleEntry, cameraBoxes, interpolateAt, mount };
});
