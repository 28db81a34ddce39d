// Unmodified automerge-repo clients (the versions pinned in package-lock.json) against the Atiende
// sync server. Started by tests/tests/api/js_sync.rs, which runs the server, creates the users and
// the document, passes them in the environment and then checks the database.
//
//   ATIENDE_SYNC_URL      ws://127.0.0.1:<port>/api/v1/sync
//   ATIENDE_DOC_URL       automerge:<id> of a field report with `status: "scheduled"`
//   ATIENDE_TOKEN_A       technician with write access
//   ATIENDE_TOKEN_B       second technician with write access
//   ATIENDE_TOKEN_READER  customer with read access
//   ATIENDE_TOKEN_OUTSIDER technician without access

import { test } from "node:test"
import assert from "node:assert/strict"
import { generateAutomergeUrl } from "@automerge/automerge-repo"
import { env, goOffline, goOnline, repoFor, waitFor, withTimeout } from "./support.mjs"

test("two technicians edit one report and see each other's changes", async () => {
  const docUrl = env("ATIENDE_DOC_URL")
  const a = await withTimeout((await repoFor("ATIENDE_TOKEN_A")).find(docUrl), "technician A finds the report")
  // The server writes plain strings, which Automerge 3 hands to JavaScript as ImmutableString.
  assert.equal(String(a.doc().status), "scheduled")
  a.change(doc => {
    doc.observations = "termites in the kitchen (A)"
  })

  const b = await withTimeout((await repoFor("ATIENDE_TOKEN_B")).find(docUrl), "technician B finds the report")
  await waitFor(b, doc => doc.observations === "termites in the kitchen (A)", "B to see A's change")
  b.change(doc => {
    doc.recommendations = "seal the cracks (B)"
  })
  await waitFor(a, doc => doc.recommendations === "seal the cracks (B)", "A to see B's change")

  // Concurrent edits, including of the same field, merge to the same document on both phones.
  a.change(doc => {
    doc.areas = ["kitchen", "basement"]
    doc.targetPest = "termites"
  })
  b.change(doc => {
    doc.productsUsed = [{ name: "Termidor", quantity: 2, unit: "L" }]
    doc.targetPest = "cockroaches"
  })
  const merged = doc => doc.areas?.length === 2 && doc.productsUsed?.length === 1
  await waitFor(a, merged, "A to merge B's concurrent change")
  await waitFor(b, merged, "B to merge A's concurrent change")
  await waitFor(b, doc => String(doc.targetPest) === String(a.doc().targetPest), "both to agree on the pest")
  assert.deepEqual(a.heads(), b.heads())
})

test("edits made while both phones are offline merge when they reconnect", async () => {
  const docUrl = env("ATIENDE_DOC_URL")
  const [repoA, repoB] = await Promise.all(["ATIENDE_TOKEN_A", "ATIENDE_TOKEN_B"].map(repoFor))
  const [a, b] = await Promise.all(
    [repoA, repoB].map(repo => withTimeout(repo.find(docUrl), "both technicians find the report")),
  )
  await waitFor(a, doc => doc.productsUsed?.length === 1, "A to be up to date")
  await waitFor(b, doc => doc.productsUsed?.length === 1, "B to be up to date")
  goOffline(repoA)
  goOffline(repoB)
  a.change(doc => {
    doc.arrival = "08:10"
    doc.productsUsed.push({ name: "Maxforce", quantity: 1, unit: "g" })
  })
  b.change(doc => {
    doc.departure = "09:40"
    doc.observations = "no activity in the basement (B, offline)"
  })
  goOnline(repoA)
  goOnline(repoB)
  const merged = doc =>
    doc.arrival === "08:10" && doc.departure === "09:40" && doc.productsUsed?.length === 2
  await waitFor(a, merged, "A to merge B's offline edit")
  await waitFor(b, merged, "B to merge A's offline edit")
  assert.deepEqual(a.heads(), b.heads())
})

test("a long offline session reaches the server as one compressed document and syncs", async () => {
  const docUrl = env("ATIENDE_DOC_URL")
  const [repoA, repoB] = await Promise.all(["ATIENDE_TOKEN_A", "ATIENDE_TOKEN_B"].map(repoFor))
  const [a, b] = await Promise.all(
    [repoA, repoB].map(repo => withTimeout(repo.find(docUrl), "both technicians find the report")),
  )
  await waitFor(a, doc => doc.departure === "09:40", "A to be up to date")
  await waitFor(b, doc => doc.departure === "09:40", "B to be up to date")
  goOffline(repoA)
  // A day without signal: many more changes than the report had, with long notes. Automerge then
  // sends the whole document, its columns deflated, instead of the changes one by one.
  const note = "inspected the perimeter, baited the stations, no live activity. ".repeat(8)
  for (let i = 0; i < 120; i++) {
    a.change(doc => {
      if (!doc.visitLog) doc.visitLog = []
      doc.visitLog.push(`note ${i}: ${note}`)
    })
  }
  goOnline(repoA)
  await waitFor(b, doc => doc.visitLog?.length === 120, "B to receive the offline day")
})

test("a reader receives the report but its changes go nowhere", async () => {
  const docUrl = env("ATIENDE_DOC_URL")
  const reader = await withTimeout((await repoFor("ATIENDE_TOKEN_READER")).find(docUrl), "the reader finds the report")
  await waitFor(reader, doc => doc.departure === "09:40", "the reader to be up to date")
  reader.change(doc => {
    doc.status = "changed by a reader"
  })
  // Automerge 3.5 sees the server's read-only flag and keeps the change to itself; an older
  // client would send it and get an `error`. Either way it is not stored (the Rust side checks
  // the database too): a fresh device of the reader gets the report as the writers left it.
  await new Promise(resolve => setTimeout(resolve, 500))
  const fresh = await withTimeout((await repoFor("ATIENDE_TOKEN_READER")).find(docUrl), "a new device of the reader finds the report")
  const seen = await waitFor(fresh, doc => doc.departure === "09:40", "the new device to be up to date")
  assert.notEqual(seen.status, "changed by a reader")
})

test("a document the user may not see, and one that does not exist, are unavailable", async () => {
  const outsider = await repoFor("ATIENDE_TOKEN_OUTSIDER")
  await assert.rejects(
    withTimeout(outsider.find(env("ATIENDE_DOC_URL")), "the forbidden report to be unavailable"),
    /unavailable/,
  )
  await assert.rejects(
    withTimeout(outsider.find(generateAutomergeUrl()), "an unknown document to be unavailable"),
    /unavailable/,
  )
})
