// What the JavaScript interop tests share: phones (automerge-repo Repos) connected to the Atiende
// server given in the environment, airplane mode, and patient waiting.

import { after } from "node:test"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

export const PATIENCE_MS = 10_000

export function env(name) {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set: run this through tests/tests/api/js_sync.rs`)
  return value
}

const repos = []
const adapters = new Map()

after(async () => {
  await Promise.all(repos.map(repo => repo.shutdown()))
})

// A phone logged in with the token in the environment variable `tokenVar`.
export function repoFor(tokenVar) {
  const url = `${env("ATIENDE_SYNC_URL")}?token=${encodeURIComponent(env(tokenVar))}`
  const adapter = new WebSocketClientAdapter(url, 1000)
  const repo = new Repo({ network: [adapter] })
  repos.push(repo)
  adapters.set(repo, adapter)
  return repo
}

// Airplane mode: the same Repo and peer id, with the socket closed and later reopened.
export function goOffline(repo) {
  adapters.get(repo).disconnect()
}

export function goOnline(repo) {
  adapters.get(repo).connect(repo.peerId)
}

export function withTimeout(promise, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), PATIENCE_MS)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// Polls `probe` (which returns {ok, value}) until ok; returns the value.
export async function eventually(probe, what) {
  const deadline = Date.now() + PATIENCE_MS
  let last
  while (Date.now() < deadline) {
    last = await probe()
    if (last.ok) return last.value
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last?.value)}`)
}

// Waits until the document satisfies `predicate`; returns it.
export function waitFor(handle, predicate, what) {
  return eventually(() => ({ ok: predicate(handle.doc()), value: handle.doc() }), what)
}
