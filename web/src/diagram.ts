// Lays out a workflow type's machine from its transitions: states in columns by their distance from the initial
// state (breadth first). A transition to a later column is a curve between columns; one within a column is a short
// vertical arrow between neighbours, or an arc beside the column; one back to an earlier column is an arc in a lane
// above or below all states (the side nearer to both ends). Each is labelled with its triggers.

import type { StateKind, WorkflowTypeInfo } from "./model";

export const NODE_WIDTH = 156;
export const NODE_HEIGHT = 48;
const COLUMN_GAP = 116; // room for a label such as "request_approval"
const ROW_GAP = 40;
const MARGIN = 16;
const LANE_GAP = 24;
const SIDE_GAP = 16;

export interface PlacedState {
  name: string;
  kind: StateKind;
  x: number;
  y: number;
}

export interface PlacedTransition {
  key: string;
  source: string;
  dest: string;
  label: string;
  path: string;
  labelX: number;
  labelY: number;
  labelAnchor: "start" | "middle";
}

export interface MachineLayout {
  width: number;
  height: number;
  states: PlacedState[];
  transitions: PlacedTransition[];
}

function depths(info: WorkflowTypeInfo): Map<string, number> {
  const depth = new Map([[info.initial, 0]]);
  const queue = [info.initial];
  while (queue.length) {
    const state = queue.shift()!;
    for (const { source, dest } of info.transitions) {
      if (source === state && !depth.has(dest)) {
        depth.set(dest, depth.get(state)! + 1);
        queue.push(dest);
      }
    }
  }
  const unreached = Math.max(...depth.values()) + 1; // states no transition reaches go in a column of their own
  for (const { name } of info.states) if (!depth.has(name)) depth.set(name, unreached);
  return depth;
}

export function layoutMachine(info: WorkflowTypeInfo): MachineLayout {
  const depth = depths(info);
  const columns: string[][] = [];
  for (const [name, d] of depth) (columns[d] ??= []).push(name); // in breadth-first order within a column
  const tallest = Math.max(...columns.map((column) => column.length));
  const bodyHeight = tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;

  // One label per (source, dest) pair, however many triggers share it.
  const pairs = new Map<string, { source: string; dest: string; triggers: string[] }>();
  for (const { trigger, source, dest } of info.transitions) {
    const key = `${source}→${dest}`;
    if (!pairs.has(key)) pairs.set(key, { source, dest, triggers: [] });
    pairs.get(key)!.triggers.push(trigger);
  }

  // Positions with the body starting at 0; lanes above are added once they are known.
  const kindOf = new Map(info.states.map((state) => [state.name, state.kind]));
  const place = new Map<string, PlacedState>();
  columns.forEach((column, c) => {
    const offset = ((tallest - column.length) * (NODE_HEIGHT + ROW_GAP)) / 2; // centre short columns
    column.forEach((name, r) => {
      const x = MARGIN + c * (NODE_WIDTH + COLUMN_GAP);
      place.set(name, { name, kind: kindOf.get(name) ?? "step", x, y: offset + r * (NODE_HEIGHT + ROW_GAP) });
    });
  });
  const middle = (name: string) => place.get(name)!.y + NODE_HEIGHT / 2;
  const known = [...pairs.values()].filter(({ source, dest }) => place.has(source) && place.has(dest));
  const backward = known.filter(({ source, dest }) => depth.get(dest)! < depth.get(source)!);
  const below = backward.filter(({ source, dest }) => middle(source) + middle(dest) > bodyHeight);
  const above = backward.filter((pair) => !below.includes(pair));
  const top = MARGIN + (above.length ? LANE_GAP * above.length + 8 : 0);
  for (const state of place.values()) state.y += top;
  const bottom = top + bodyHeight;
  const height = bottom + (below.length ? LANE_GAP * below.length + 8 : 0) + MARGIN;
  const width = 2 * MARGIN + columns.length * NODE_WIDTH + (columns.length - 1) * COLUMN_GAP + SIDE_GAP * 2;

  const sideArcs = new Map<number, number>(); // column → arcs drawn beside it so far
  const transitions = known.map((pair): PlacedTransition => {
    const from = place.get(pair.source)!;
    const to = place.get(pair.dest)!;
    const base = { key: `${pair.source}→${pair.dest}`, source: pair.source, dest: pair.dest };
    const label = pair.triggers.join(" / ");
    const [sourceDepth, destDepth] = [depth.get(pair.source)!, depth.get(pair.dest)!];

    if (destDepth > sourceDepth) {
      const [x1, y1] = [from.x + NODE_WIDTH, from.y + NODE_HEIGHT / 2];
      const [x2, y2] = [to.x, to.y + NODE_HEIGHT / 2];
      const bend = (x2 - x1) / 2;
      const path = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
      return { ...base, label, path, labelX: (x1 + x2) / 2, labelY: (y1 + y2) / 2 - 6, labelAnchor: "middle" };
    }

    if (destDepth === sourceDepth) {
      const column = columns[sourceDepth];
      const down = column.indexOf(pair.dest) > column.indexOf(pair.source);
      if (Math.abs(column.indexOf(pair.dest) - column.indexOf(pair.source)) === 1) {
        // Neighbours: a short arrow across the gap (left of centre going down, right of it going up), labelled on it.
        const x = from.x + NODE_WIDTH / 2 + (down ? -14 : 14);
        const [y1, y2] = down ? [from.y + NODE_HEIGHT, to.y] : [from.y, to.y + NODE_HEIGHT];
        const path = `M ${x} ${y1} L ${x} ${y2}`;
        return { ...base, label, path, labelX: x, labelY: (y1 + y2) / 2 + 4, labelAnchor: "middle" };
      }
      // Farther apart: an arc beside the column, right of it.
      const arcs = sideArcs.get(sourceDepth) ?? 0;
      sideArcs.set(sourceDepth, arcs + 1);
      const out = from.x + NODE_WIDTH + SIDE_GAP + arcs * 10;
      const [x1, y1] = [from.x + NODE_WIDTH, from.y + NODE_HEIGHT / 2 + (down ? 10 : -10)];
      const [x2, y2] = [to.x + NODE_WIDTH, to.y + NODE_HEIGHT / 2 + (down ? -10 : 10)];
      const path = `M ${x1} ${y1} C ${out} ${y1}, ${out} ${y2}, ${x2} ${y2}`;
      return { ...base, label, path, labelX: out + 2, labelY: (y1 + y2) / 2 + 4, labelAnchor: "start" };
    }

    // Back to an earlier column: out of the top (or bottom), along a lane, into the top (or bottom).
    const up = above.includes(pair);
    const lane = up ? above.indexOf(pair) : below.indexOf(pair);
    const laneY = up ? top - 8 - LANE_GAP * (lane + 0.5) : bottom + 8 + LANE_GAP * (lane + 0.5);
    const [sx, sy] = [from.x + NODE_WIDTH / 2 + 12 + lane * 8, up ? from.y : from.y + NODE_HEIGHT];
    const [dx, dy] = [to.x + NODE_WIDTH / 2 - 12 - lane * 8, up ? to.y : to.y + NODE_HEIGHT];
    const mid = (sx + dx) / 2;
    const path = `M ${sx} ${sy} C ${sx} ${laneY}, ${sx} ${laneY}, ${mid} ${laneY} S ${dx} ${laneY}, ${dx} ${dy}`;
    return { ...base, label, path, labelX: mid, labelY: laneY + 4, labelAnchor: "middle" };
  });
  return { width, height, states: [...place.values()], transitions };
}
