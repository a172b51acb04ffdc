// Reference peer for `make bench`: @tus/server + @tus/file-store, stock settings, on
// an ephemeral loopback port. Prints "node: listening on HOST:PORT" once bound so the
// driver never sleeps to wait for it.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const dir = process.env.TUS_DIR;
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 0);
if (!dir) {
  console.error('TUS_DIR is required');
  process.exit(2);
}

const tus = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
const srv = http.createServer((req, res) => tus.handle(req, res));
srv.listen({ host, port }, () => {
  const a = srv.address();
  console.log(`node: listening on ${a.address}:${a.port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
