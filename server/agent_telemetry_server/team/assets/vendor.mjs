// Copies uPlot's minified build, stylesheet and licence from node_modules next to this
// file, where the server serves them to the team dashboard (no CDN, ever).
import { copyFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "node_modules", "uplot");
const files = [
  ["dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["dist/uPlot.min.css", "uPlot.min.css"],
  ["LICENSE", "uPlot.LICENSE"],
];
for (const [from, to] of files) copyFileSync(join(pkg, from), join(here, to));
const { version } = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
console.log(`vendored uplot ${version}`);
