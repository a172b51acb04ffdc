#!/usr/bin/env node
// Uploads one file with tus-js-client while the server is being killed and restarted
// under it (tests/integration/test_crash.py). Retries for long enough to outlast a
// restart and reports every server answer that states an offset, so the test can
// check that no acknowledged offset ever goes backwards:
//
//   node crash_upload.js <endpoint> <file> <chunk-size>
//
// stdout, one JSON object per line: {"event":"created","url"}, {"event":"ack",
// "offset"} for each 204 to a PATCH, {"event":"head","offset"} for each 200 to a HEAD,
// {"event":"done","url"}. Exit 0 only when the upload finished.
'use strict'

const fs = require('fs')
const tus = require('tus-js-client')

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function main() {
  const [endpoint, file, chunk] = process.argv.slice(2)
  if (!endpoint || !file || !/^[0-9]+$/.test(chunk || '')) {
    process.stderr.write('usage: node crash_upload.js <endpoint> <file> <chunk-size>\n')
    process.exit(2)
  }
  const size = fs.statSync(file).size
  const upload = new tus.Upload(fs.createReadStream(file), {
    endpoint,
    uploadSize: size,
    chunkSize: Number(chunk),
    metadata: { filename: file },
    // A restart under ASan takes a second or two; the counter resets whenever the
    // offset moves, so this only bounds a server that stays down.
    retryDelays: Array(60).fill(250),
    storeFingerprintForResuming: false,
    onUploadUrlAvailable() {
      emit({ event: 'created', url: upload.url })
    },
    onAfterResponse(req, res) {
      const m = req.getMethod()
      const st = res.getStatus()
      const off = res.getHeader('Upload-Offset')
      if (m === 'PATCH' && st === 204) emit({ event: 'ack', offset: Number(off) })
      else if (m === 'HEAD' && st === 200) emit({ event: 'head', offset: Number(off) })
    },
    onError(err) {
      process.stderr.write(`crash_upload.js: ${err && err.stack ? err.stack : err}\n`)
      process.exit(1)
    },
    onSuccess() {
      emit({ event: 'done', url: upload.url })
    },
  })
  upload.start()
}

main()
