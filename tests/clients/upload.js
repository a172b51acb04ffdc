#!/usr/bin/env node
// Uploads one file to a tus server with tus-js-client (Node API), the way a real
// user of the library would. Driven by tests/integration/test_clients.py.
//
//   node upload.js <endpoint> <file> [--abort-at BYTES] [--chunk-size N]
//                  [--resume url|storage] [--url-storage FILE]
//
// Prints one JSON object per line on stdout: {"event":"created","url":...},
// {"event":"aborted","bytesSent":...}, {"event":"resume","offset":...},
// {"event":"done","url":...}. Exits 0 only when the upload finished.
//
// --abort-at: abort the first attempt once tus-js-client reports that many bytes
// sent, then start a second Upload for the same file that continues where the server
// says it stopped: either by handing it the upload URL (--resume url, the default) or
// through findPreviousUploads()/resumeFromPreviousUpload() with a FileUrlStorage
// (--resume storage).
'use strict'

const fs = require('fs')
const path = require('path')
const { Readable, Transform } = require('stream')
const tus = require('tus-js-client')

// On loopback the server takes 50 MB faster than tus-js-client reports progress
// (its progress callback is throttled to one call per 100 ms), so an abort "at 20 MB"
// would land after the last byte. The first attempt therefore sends its PATCH body
// through this pacing stream: a 64 KiB piece, then a short pause. tus-js-client's
// own Node HTTP stack still does the sending; only the body's pace changes.
const PIECE = 64 * 1024

class Pacer extends Transform {
  constructor(pauseMs) {
    super({ highWaterMark: PIECE })
    this._pause = pauseMs
  }

  _transform(chunk, _enc, cb) {
    for (let off = 0; off < chunk.length; off += PIECE) this.push(chunk.subarray(off, off + PIECE))
    setTimeout(cb, this._pause * Math.max(1, Math.ceil(chunk.length / PIECE)))
  }
}

class PacedHttpStack {
  constructor(inner, pauseMs) {
    this._inner = inner
    this._pause = pauseMs
  }

  createRequest(method, url) {
    const req = this._inner.createRequest(method, url)
    const send = req.send.bind(req)
    req.send = (body) => {
      if (body == null) return send(body)
      const size = Buffer.isBuffer(body) || body instanceof Uint8Array ? body.length : body.size
      const source = body instanceof Readable ? body : Readable.from([Buffer.from(body)])
      const paced = source.pipe(new Pacer(this._pause))
      paced.size = size // the stack takes Content-Length from body.size
      return send(paced)
    }
    return req
  }

  getName() {
    return `paced-${this._inner.getName()}`
  }
}

function usage(msg) {
  process.stderr.write(`upload.js: ${msg}\n`)
  process.stderr.write(
    'usage: node upload.js <endpoint> <file> [--abort-at BYTES] [--chunk-size N] ' +
      '[--resume url|storage] [--url-storage FILE]\n',
  )
  process.exit(2)
}

function parseArgs(argv) {
  const opts = { abortAt: null, chunkSize: null, resume: 'url', urlStorage: null }
  const positional = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    const int = (v) => {
      if (!/^[0-9]+$/.test(v)) usage(`${a}: not a non-negative integer: ${v}`)
      return Number(v)
    }
    if (a === '--abort-at') opts.abortAt = int(next())
    else if (a === '--chunk-size') opts.chunkSize = int(next())
    else if (a === '--resume') opts.resume = next()
    else if (a === '--url-storage') opts.urlStorage = next()
    else if (a.startsWith('--')) usage(`unknown option ${a}`)
    else positional.push(a)
  }
  if (positional.length !== 2) usage('need <endpoint> and <file>')
  if (opts.resume !== 'url' && opts.resume !== 'storage') usage('--resume is url or storage')
  opts.endpoint = positional[0]
  opts.file = positional[1]
  return opts
}

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

function baseOptions(opts, size) {
  const o = {
    endpoint: opts.endpoint,
    uploadSize: size,
    metadata: { filename: path.basename(opts.file), filetype: 'application/octet-stream' },
    // A few quick retries: the tests run on loopback, a retry only hides a bug if it
    // is needed at all, and the test checks the bytes in the end anyway.
    retryDelays: [0, 250, 1000],
    removeFingerprintOnSuccess: false,
    // One fixed key per file and endpoint, so the second attempt finds the first.
    fingerprint: async () => `upload.js-${path.resolve(opts.file)}-${size}-${opts.endpoint}`,
  }
  if (opts.chunkSize) o.chunkSize = opts.chunkSize
  if (opts.resume === 'storage') {
    o.urlStorage = new tus.FileUrlStorage(opts.urlStorage || `${opts.file}.tus-urls.json`)
    o.storeFingerprintForResuming = true
  }
  return o
}

// First attempt: runs until `abortAt` bytes are reported sent, then aborts the request
// mid-body (the server keeps what reached it) and resolves with the upload URL.
function firstAttempt(opts, size) {
  return new Promise((resolve, reject) => {
    let aborted = false
    const paced = opts.abortAt != null
    const upload = new tus.Upload(fs.createReadStream(opts.file), {
      ...baseOptions(opts, size),
      ...(paced ? { httpStack: new PacedHttpStack(new tus.DefaultHttpStack(), 1) } : {}),
      onUploadUrlAvailable() {
        emit({ event: 'created', url: upload.url })
      },
      onProgress(bytesSent) {
        if (aborted || opts.abortAt == null || bytesSent < opts.abortAt) return
        aborted = true
        upload
          .abort(false)
          .then(() => {
            emit({ event: 'aborted', bytesSent })
            resolve({ url: upload.url, aborted: true })
          })
          .catch(reject)
      },
      onError: reject,
      onSuccess() {
        if (aborted) return
        // The whole file went through before the abort point: nothing to resume.
        resolve({ url: upload.url, aborted: false })
      },
    })
    upload.start()
  })
}

function secondAttempt(opts, size, url) {
  return new Promise((resolve, reject) => {
    let offsetSeen = false
    const extra = {}
    if (opts.resume === 'url') extra.uploadUrl = url
    const upload = new tus.Upload(fs.createReadStream(opts.file), {
      ...baseOptions(opts, size),
      ...extra,
      onAfterResponse(req, res) {
        // The HEAD that tells the client where to continue.
        if (!offsetSeen && req.getMethod() === 'HEAD') {
          offsetSeen = true
          emit({ event: 'resume', offset: Number(res.getHeader('Upload-Offset')) })
        }
      },
      onError: reject,
      onSuccess() {
        resolve(upload.url)
      },
    })
    if (opts.resume === 'storage') {
      upload
        .findPreviousUploads()
        .then((previous) => {
          if (previous.length === 0) {
            reject(new Error('findPreviousUploads found nothing to resume'))
            return
          }
          upload.resumeFromPreviousUpload(previous[0])
          upload.start()
        })
        .catch(reject)
    } else {
      upload.start()
    }
  })
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const size = fs.statSync(opts.file).size
  const first = await firstAttempt(opts, size)
  if (!first.aborted) {
    // Finished in one go (no abort requested or abort point past the end).
    emit({ event: 'done', url: first.url, resumed: false })
    return
  }
  const url = first.url
  const finalUrl = await secondAttempt(opts, size, url)
  if (finalUrl !== url) throw new Error(`resumed upload has another URL: ${finalUrl} != ${url}`)
  emit({ event: 'done', url: finalUrl, resumed: true })
}

main().catch((err) => {
  process.stderr.write(`upload.js: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
