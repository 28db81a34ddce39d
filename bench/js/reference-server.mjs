// The reference that tests/src/bin/bench-sync.rs measures Atiende's sync server against: the
// stock automerge-repo sync server (a Repo with the WebSocket server adapter and file storage),
// configured the way its own sync-server example is. Nothing here is tuned for the benchmark.
//
//   BENCH_PORT              port on 127.0.0.1 (0: any; the chosen one is printed)
//   BENCH_DATA_DIR          where NodeFSStorageAdapter keeps the documents
//   BENCH_SAVE_DEBOUNCE_MS  Repo's saveDebounceRate (automerge-repo's default is 100)

import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

const port = Number(process.env.BENCH_PORT ?? 0)
const dataDir = process.env.BENCH_DATA_DIR ?? "automerge-repo-data"
const saveDebounceRate = Number(process.env.BENCH_SAVE_DEBOUNCE_MS ?? 100)

const wss = new WebSocketServer({ host: "127.0.0.1", port })
const adapter = new NodeWSServerAdapter(wss)
const repo = new Repo({
  network: [adapter],
  storage: new NodeFSStorageAdapter(dataDir),
  // A sync server does not push every document to every peer: it serves what peers ask for.
  sharePolicy: async () => false,
  saveDebounceRate,
})

// The Repo attaches the adapter to the server only once its storage id is loaded; a socket that
// connects before then is never served. The driver reads this line to learn the port.
await new Promise(resolve => wss.once("listening", resolve))
while (adapter.peerId === undefined) {
  await new Promise(resolve => setTimeout(resolve, 5))
}
console.log(`listening on ${wss.address().port}`)

async function stop() {
  await repo.shutdown()
  wss.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
