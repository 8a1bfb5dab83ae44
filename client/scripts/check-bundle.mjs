// weir-server embeds only dist/index.js and dist/demo.js and serves them at
// /client/, so index.js must import nothing at run time and demo.js only
// ./index.js. Fails the build otherwise.
import { readFileSync } from 'node:fs';

const allowed = { 'index.js': [], 'demo.js': ['./index.js'] };
const importPattern = /^\s*(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]/gm;
let failed = false;

for (const [file, ok] of Object.entries(allowed)) {
  const text = readFileSync(new URL(`../dist/${file}`, import.meta.url), 'utf8');
  for (const match of text.matchAll(importPattern)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (!ok.includes(specifier)) {
      console.error(`dist/${file} imports ${specifier}; the server serves only index.js and demo.js`);
      failed = true;
    }
  }
}
if (failed) process.exit(1);
