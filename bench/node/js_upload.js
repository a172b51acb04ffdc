// tus-js-client's Node uploader doing tusc-upload's job, for bench/upload.sh: walks a
// directory (or takes one file), uploads up to --jobs files at once, each as one tus
// upload in one PATCH (chunkSize left at its default, Infinity), or with --parts K as K
// partial uploads plus the final (tus-js-client's parallelUploads).
//
//   node js_upload.js ENDPOINT PATH [--jobs N] [--parts K]
//
// Prints {"files":…,"bytes":…,"seconds":…} on stdout; exits 1 if any upload failed.
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

function parse(argv) {
  const o = { jobs: 4, parts: 1, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--jobs') o.jobs = Number(argv[++i]);
    else if (argv[i] === '--parts') o.parts = Number(argv[++i]);
    else o.rest.push(argv[i]);
  }
  if (o.rest.length !== 2 || !(o.jobs >= 1) || !(o.parts >= 1)) {
    console.error('usage: node js_upload.js ENDPOINT PATH [--jobs N] [--parts K]');
    process.exit(2);
  }
  return o;
}

// Lazily, like tusc-upload: one directory listing at a time.
function* walk(p) {
  const st = fs.statSync(p);
  if (st.isFile()) {
    yield p;
    return;
  }
  for (const e of fs.readdirSync(p, { withFileTypes: true })) {
    const q = path.join(p, e.name);
    if (e.isDirectory()) yield* walk(q);
    else if (e.isFile()) yield q;
  }
}

function uploadOne(endpoint, file, parts) {
  const size = fs.statSync(file).size;
  return new Promise((resolve, reject) => {
    // A ReadStream with a path is read by slices of that path; its size is known then,
    // and tus-js-client refuses uploadSize together with parallelUploads.
    const u = new tus.Upload(fs.createReadStream(file), {
      endpoint,
      ...(parts > 1 ? {} : { uploadSize: size }),
      metadata: { filename: path.basename(file) },
      parallelUploads: parts,
      retryDelays: [0, 1000, 3000],
      storeFingerprintForResuming: false,
      onError: reject,
      onSuccess: () => resolve(size),
    });
    u.start();
  });
}

async function main() {
  const o = parse(process.argv.slice(2));
  const [endpoint, root] = o.rest;
  const files = walk(root);
  const t0 = process.hrtime.bigint();
  let count = 0;
  let bytes = 0;
  let failed = 0;
  async function worker() {
    for (;;) {
      const n = files.next();
      if (n.done) return;
      try {
        const sent = await uploadOne(endpoint, n.value, o.parts);
        bytes += sent;
        count++;
      } catch (e) {
        failed++;
        console.error(`${n.value}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: o.jobs }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ files: count, bytes, seconds }));
  process.exit(failed ? 1 : 0);
}

main();
