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

// A sync ticket for the session of the token in `tokenVar`, as an app asks for one before it
// opens the socket: POST /api/v1/sync/ticket answers {ticket, expires_at, url}.
export async function syncTicket(tokenVar) {
  const response = await fetch(`${env("ATIENDE_BASE_URL")}/api/v1/sync/ticket`, {
    method: "POST",
    headers: { authorization: `Bearer ${env(tokenVar)}` },
  })
  if (response.status !== 201) throw new Error(`sync ticket: ${response.status} ${await response.text()}`)
  return response.json()
}

// A phone logged in with the token in the environment variable `tokenVar`. The stock adapter
// reconnects with the same URL after every close: the ticket is reusable while it lasts.
export async function repoFor(tokenVar) {
  const { url } = await syncTicket(tokenVar)
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
