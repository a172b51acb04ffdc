/*
 * mime — the `filetype` metadata a browser would send, guessed from a file name's
 * extension (case-insensitive). Pure, thread-safe; the string is static.
 */
#ifndef TUSC_UPLOAD_MIME_H
#define TUSC_UPLOAD_MIME_H

/* The media type for `name`, "application/octet-stream" when the extension is unknown. */
const char *up_mime_guess(const char *name);

#endif
