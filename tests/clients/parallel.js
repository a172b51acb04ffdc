#!/usr/bin/env node
// Uploads one file with tus-js-client's parallelUploads, which splits it into partial
// uploads (Upload-Concat: partial) sent at the same time and then creates the final
// upload (Upload-Concat: final;…). Driven by tests/integration/test_concat.py.
//
//   node parallel.js <endpoint> <file> [--parts N] [--chunk-size N]
//
// Prints one JSON object per line: {"event":"partial","url":...} for each partial,
// then {"event":"done","url":...} with the final upload's URL. Exits 0 only when the
// final upload was created.
'use strict'

const fs = require('fs')
const path = require('path')
const tus = require('tus-js-client')

function usage(msg) {
  process.stderr.write(`parallel.js: ${msg}\n`)
  process.stderr.write('usage: node parallel.js <endpoint> <file> [--parts N] [--chunk-size N]\n')
  process.exit(2)
}

function parseArgs(argv) {
  const opts = { parts: 4, chunkSize: null }
  const positional = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const int = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      const v = argv[++i]
      if (!/^[1-9][0-9]*$/.test(v)) usage(`${a}: not a positive integer: ${v}`)
      return Number(v)
    }
    if (a === '--parts') opts.parts = int()
    else if (a === '--chunk-size') opts.chunkSize = int()
    else if (a.startsWith('--')) usage(`unknown option ${a}`)
    else positional.push(a)
  }
  if (positional.length !== 2) usage('need <endpoint> and <file>')
  opts.endpoint = positional[0]
  opts.file = positional[1]
  return opts
}

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function main() {
  const opts = parseArgs(process.argv.slice(2))
  const reported = new Set()
  return new Promise((resolve, reject) => {
    const options = {
      endpoint: opts.endpoint,
      parallelUploads: opts.parts,
      metadata: { filename: path.basename(opts.file), filetype: 'application/octet-stream' },
      retryDelays: [0, 250, 1000],
      // Nothing to resume here: keep the URL storage out of the test.
      storeFingerprintForResuming: false,
      onAfterResponse(req, res) {
        // Each partial's creation answers with its Location.
        const concat = req.getHeader('Upload-Concat')
        if (req.getMethod() === 'POST' && concat === 'partial') {
          const url = res.getHeader('Location')
          if (url && !reported.has(url)) {
            reported.add(url)
            emit({ event: 'partial', url })
          }
        }
      },
      onError: reject,
      onSuccess() {
        resolve(upload.url)
      },
    }
    if (opts.chunkSize) options.chunkSize = opts.chunkSize
    // A path-backed ReadStream lets tus-js-client slice the file for each part.
    const upload = new tus.Upload(fs.createReadStream(opts.file), options)
    upload.start()
  })
}

main()
  .then((url) => {
    emit({ event: 'done', url })
    process.exit(0)
  })
  .catch((err) => {
    process.stderr.write(`parallel.js: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  })
