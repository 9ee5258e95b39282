// Copy the browser builds of the portal's npm dependencies into web/static/vendor/.
//
// Run by `make assets` after `npm ci` (plain Node, no other tools needed). The output
// directory is wiped and rebuilt from scratch every time, so it always contains exactly
// the files listed below, plus LICENSES.txt and manifest.json. The output is
// deterministic (no timestamps), so the same lockfile always gives the same files.

import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const FRONTEND = dirname(fileURLToPath(import.meta.url));
const NODE_MODULES = join(FRONTEND, "node_modules");
const VENDOR = join(FRONTEND, "..", "static", "vendor");

// [npm package, file inside the package, destination under web/static/vendor/]
const FILES = [
  ["marked", "lib/marked.esm.js", "marked/marked.esm.js"],
  ["dompurify", "dist/purify.es.mjs", "dompurify/purify.es.mjs"],
  ["dompurify", "dist/purify.min.js", "dompurify/purify.min.js"],
  ["@highlightjs/cdn-assets", "highlight.min.js", "highlight/highlight.min.js"],
  ["@highlightjs/cdn-assets", "es/highlight.min.js", "highlight/es/highlight.min.js"],
  ["@highlightjs/cdn-assets", "styles/github.min.css", "highlight/github.min.css"],
  ["@highlightjs/cdn-assets", "styles/github-dark.min.css", "highlight/github-dark.min.css"],
  ["pdfjs-dist", "build/pdf.min.mjs", "pdfjs/pdf.min.mjs"],
  ["pdfjs-dist", "build/pdf.worker.min.mjs", "pdfjs/pdf.worker.min.mjs"],
];

// pdfjs-dist's web/pdf_viewer.css is ~260 KB of viewer UI with url(images/...) references;
// we only need its self-contained text-layer block (the CSS that pdf.js's TextLayer API
// relies on), which starts at the first top-level `.textLayer{` rule and ends where the
// `.annotationLayer{` rules begin. It is copied verbatim.
const TEXT_LAYER_CSS = {
  pkg: "pdfjs-dist",
  src: "web/pdf_viewer.css",
  dest: "pdfjs/text_layer.css",
  start: "\n.textLayer{",
  end: "\n.annotationLayer{",
};

const LICENSE_FILE = /^(licen[cs]e|copying|notice)([-._].*)?$/i;

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

// The versions actually installed, checked against the exact pins in package.json so a
// stale node_modules can never be vendored silently.
const pins = readJson(join(FRONTEND, "package.json")).dependencies;
const packages = {};
for (const [name, pinned] of Object.entries(pins)) {
  const pkgDir = join(NODE_MODULES, name);
  let meta;
  try {
    meta = readJson(join(pkgDir, "package.json"));
  } catch {
    fail(`${name} is not installed; run \`npm ci --prefix web/frontend\` first (or \`make assets\`)`);
  }
  if (meta.version !== pinned) {
    fail(`${name} ${meta.version} is installed but package.json pins ${pinned}; run \`npm ci\``);
  }
  packages[name] = { dir: pkgDir, version: meta.version, license: meta.license ?? "UNKNOWN" };
}

function sha256(buf) {
  return createHash("sha256").update(buf).digest("hex");
}

rmSync(VENDOR, { recursive: true, force: true });
mkdirSync(VENDOR, { recursive: true });

const manifestFiles = [];
function record(dest, pkg, source, buf) {
  manifestFiles.push({
    path: dest,
    package: pkg,
    version: packages[pkg].version,
    source,
    bytes: buf.length,
    sha256: sha256(buf),
  });
}

for (const [pkg, src, dest] of FILES) {
  if (!packages[pkg]) fail(`${pkg} is not a dependency in package.json`);
  const from = join(packages[pkg].dir, src);
  const to = join(VENDOR, dest);
  mkdirSync(dirname(to), { recursive: true });
  try {
    copyFileSync(from, to);
  } catch (err) {
    fail(`cannot copy ${pkg}/${src}: ${err.message}`);
  }
  record(dest, pkg, `${pkg}/${src}`, readFileSync(to));
}

{
  const { pkg, src, dest, start, end } = TEXT_LAYER_CSS;
  const css = readFileSync(join(packages[pkg].dir, src), "utf8");
  const i = css.indexOf(start);
  const j = i < 0 ? -1 : css.indexOf(end, i);
  if (i < 0 || j < 0) fail(`cannot find the text-layer block in ${pkg}/${src}; update build.mjs`);
  const block = css.slice(i + 1, j).trimEnd() + "\n";
  if (/url\(|@import/.test(block)) fail(`text-layer block of ${pkg}/${src} is not self-contained`);
  const opens = block.split("{").length, closes = block.split("}").length;
  if (opens !== closes) fail(`text-layer block of ${pkg}/${src} has unbalanced braces`);
  const header =
    `/* Text-layer rules extracted verbatim from ${pkg}@${packages[pkg].version} ${src}` +
    ` (${packages[pkg].license}, see ../LICENSES.txt). */\n`;
  const buf = Buffer.from(header + block, "utf8");
  const to = join(VENDOR, dest);
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to, buf);
  record(dest, pkg, `${pkg}/${src} (.textLayer rules only)`, buf);
}

// LICENSES.txt: every license/notice file at the top of each vendored package.
const vendored = [...new Set(manifestFiles.map((f) => f.package))].sort();
let licenses = "Third-party software in web/static/vendor/ (generated by web/frontend/build.mjs).\n";
for (const pkg of vendored) {
  const { dir, version, license } = packages[pkg];
  const names = readdirSync(dir).filter((n) => LICENSE_FILE.test(n) && statSync(join(dir, n)).isFile()).sort();
  if (names.length === 0) fail(`${pkg} has no license file`);
  for (const n of names) {
    const rule = "=".repeat(78);
    licenses += `\n${rule}\n${pkg}@${version} (${license}) - ${n}\n${rule}\n\n`;
    licenses += readFileSync(join(dir, n), "utf8").trimEnd() + "\n";
  }
}
writeFileSync(join(VENDOR, "LICENSES.txt"), licenses);

const manifest = {
  generated_by: "web/frontend/build.mjs (make assets)",
  packages: Object.fromEntries(vendored.map((p) => [p, { version: packages[p].version, license: packages[p].license }])),
  files: manifestFiles.sort((a, b) => a.path.localeCompare(b.path)),
};
writeFileSync(join(VENDOR, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");

const total = manifestFiles.reduce((n, f) => n + f.bytes, 0);
console.log(
  `build.mjs: wrote ${manifestFiles.length} files (${(total / 1024).toFixed(0)} KiB) + LICENSES.txt + manifest.json` +
    ` to ${relative(process.cwd(), VENDOR) || "."}`,
);
