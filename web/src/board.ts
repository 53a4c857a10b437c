// The whiteboard: a map from key to object that changes only through the server's ordered `draw`
// operations (docs/protocol.md, "Whiteboard convergence"). On every `joined` the board is replaced by the
// snapshot, and only operations with an offset above the snapshot's are applied after it.
//
// Strokes drawn here are `put`s of `{shape: "line", points: [x0, y0, x1, y1, ...], color, width}` in a
// 960 × 540 coordinate space. Other shapes (text) are drawn when understood and kept either way.
//
// For tests and debugging the canvas carries `data-ops` (operations applied) and `data-objects`, and the
// page sets `window.__board` to this object.

export const WIDTH = 960;
export const HEIGHT = 540;
/** Points per stroke, so that one `draw` frame stays far below the 64 KiB limit. */
const MAX_POINTS = 1500;

type Op = { action: 'put'; key: string; object: unknown } | { action: 'delete'; key: string } | { action: 'clear' };

interface Line {
  shape: 'line';
  points: number[];
  color?: string;
  width?: number;
}

export class Board {
  readonly objects = new Map<string, unknown>();
  /** Operations applied since the page opened (snapshots not counted). */
  ops = 0;
  private base = 0;
  private stroke: number[] | null = null;
  private seq = 0;
  private readonly listening = new AbortController();
  color = '#1d4ed8';

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly me: string,
    private readonly send: (op: Op) => Promise<unknown>,
    private readonly onError: (e: unknown) => void,
  ) {
    canvas.width = WIDTH;
    canvas.height = HEIGHT;
    const signal = this.listening.signal;
    canvas.addEventListener('pointerdown', (e) => this.down(e), { signal });
    canvas.addEventListener('pointermove', (e) => this.move(e), { signal });
    canvas.addEventListener('pointerup', () => this.up(), { signal });
    canvas.addEventListener('pointercancel', () => this.up(), { signal });
    this.render();
  }

  /** Stops listening to the canvas (the room was left; the next room's board takes it over). */
  destroy(): void {
    this.listening.abort();
  }

  /** A `joined`'s snapshot: replaces the board; later `draw`s apply only above `offset`. */
  reset(objects: { key: string; object: unknown }[], offset: number): void {
    this.objects.clear();
    for (const o of objects) this.objects.set(o.key, o.object);
    this.base = offset;
    this.render();
  }

  /** A `draw` publication at `offset` (from a join's history or live). */
  apply(op: Op, offset: number): void {
    if (offset <= this.base) return; // already in the snapshot
    if (op.action === 'put') this.objects.set(op.key, op.object);
    else if (op.action === 'delete') this.objects.delete(op.key);
    else this.objects.clear();
    this.ops++;
    this.render();
  }

  /** The stream restarted under a new epoch: the new stream's board starts empty. */
  restart(): void {
    this.reset([], 0);
  }

  clear(): void {
    this.send({ action: 'clear' }).catch(this.onError);
  }

  private point(e: PointerEvent): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [
      Math.round(((e.clientX - r.left) / r.width) * WIDTH),
      Math.round(((e.clientY - r.top) / r.height) * HEIGHT),
    ];
  }

  private down(e: PointerEvent): void {
    if (e.button !== 0) return;
    this.canvas.setPointerCapture?.(e.pointerId);
    this.stroke = this.point(e);
    this.render();
  }

  private move(e: PointerEvent): void {
    if (!this.stroke || this.stroke.length >= MAX_POINTS * 2) return;
    const [x, y] = this.point(e);
    const n = this.stroke.length;
    if (x === this.stroke[n - 2] && y === this.stroke[n - 1]) return;
    this.stroke.push(x, y);
    this.render();
  }

  private up(): void {
    const points = this.stroke;
    this.stroke = null;
    if (!points) return;
    if (points.length === 2) points.push(points[0] + 1, points[1]); // a click draws a dot
    const key = `s-${this.me.slice(-12)}-${Date.now().toString(36)}-${(this.seq++).toString(36)}`;
    const object: Line = { shape: 'line', points, color: this.color, width: 3 };
    // Shown at once; the server's `draw` publication confirms it (or a failed send removes it again).
    this.objects.set(key, object);
    this.render();
    this.send({ action: 'put', key, object }).catch((e) => {
      this.objects.delete(key);
      this.render();
      this.onError(e);
    });
  }

  private render(): void {
    const g = this.canvas.getContext('2d');
    if (g) {
      g.fillStyle = '#fff';
      g.fillRect(0, 0, WIDTH, HEIGHT);
      g.lineCap = 'round';
      g.lineJoin = 'round';
      for (const o of this.objects.values()) drawObject(g, o);
      if (this.stroke) drawObject(g, { shape: 'line', points: this.stroke, color: this.color, width: 3 });
    }
    this.canvas.dataset.ops = String(this.ops);
    this.canvas.dataset.objects = String(this.objects.size);
  }
}

function drawObject(g: CanvasRenderingContext2D, o: unknown): void {
  if (typeof o !== 'object' || o === null) return;
  const obj = o as Record<string, unknown>;
  if (obj.shape === 'line' && Array.isArray(obj.points) && obj.points.length >= 2) {
    const p = obj.points as number[];
    g.strokeStyle = typeof obj.color === 'string' ? obj.color : '#000';
    g.lineWidth = typeof obj.width === 'number' ? obj.width : 3;
    g.beginPath();
    g.moveTo(p[0], p[1]);
    for (let i = 2; i + 1 < p.length; i += 2) g.lineTo(p[i], p[i + 1]);
    g.stroke();
  } else if (obj.type === 'text' && typeof obj.text === 'string') {
    g.fillStyle = typeof obj.color === 'string' ? obj.color : '#000';
    g.font = '20px system-ui, sans-serif';
    g.fillText(obj.text, Number(obj.x) || 0, Number(obj.y) || 0);
  }
}
