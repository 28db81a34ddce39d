// The product's offline flows with unmodified automerge-repo clients against the whole Atiende
// server (REST API, sync endpoint, projections). Started by tests/tests/api/js_sync.rs, which
// runs the server, creates the staff and customers and passes them in the environment:
//
//   ATIENDE_BASE_URL        http://127.0.0.1:<port>
//   ATIENDE_TOKEN_DIRECTOR  quality director
//   ATIENDE_TECH_A, ATIENDE_TECH_B              technicians' user ids
//   ATIENDE_TOKEN_TECH_A, ATIENDE_TOKEN_TECH_B  their tokens
//   ATIENDE_CUSTOMER_ID     the customer the visit is for
//   ATIENDE_TOKEN_CUSTOMER, ATIENDE_TOKEN_OTHER_CUSTOMER

import { test } from "node:test"
import assert from "node:assert/strict"
import { randomUUID } from "node:crypto"
import { env, eventually, goOffline, goOnline, repoFor, waitFor, withTimeout } from "./support.mjs"

async function api(method, path, tokenVar, body) {
  const response = await fetch(`${env("ATIENDE_BASE_URL")}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${env(tokenVar)}`,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await response.text()
  return { status: response.status, body: text ? JSON.parse(text) : null }
}

test("two technicians edit one report offline, converge, and staff read the merged rows", async () => {
  const created = await api("POST", "/api/v1/staff/work-orders", "ATIENDE_TOKEN_DIRECTOR", {
    customer_id: env("ATIENDE_CUSTOMER_ID"),
    process: "OPERATIVO",
    address: "Carrera 7 # 71-21, Bogotá",
    scheduled_at: "2026-12-02T14:00:00Z",
    service_type: "control de plagas",
    technicians: [env("ATIENDE_TECH_A"), env("ATIENDE_TECH_B")],
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const order = created.body
  const listed = await api("GET", "/api/v1/technician/work-orders", "ATIENDE_TOKEN_TECH_B")
  assert.deepEqual(listed.body.work_orders.map(o => o.report_url), [order.report_url])

  const repoA = await repoFor("ATIENDE_TOKEN_TECH_A")
  const repoB = await repoFor("ATIENDE_TOKEN_TECH_B")
  const [a, b] = await Promise.all(
    [repoA, repoB].map(repo => withTimeout(repo.find(order.report_url), "a technician finds the report")),
  )
  assert.deepEqual(a.doc().products, [])

  goOffline(repoA)
  goOffline(repoB)
  a.change(doc => {
    doc.arrival_at = "2026-12-02T14:05:00Z"
    doc.areas_treated.push("cocina")
    doc.products.push({ name: "Cipermetrina 20 EC", active_ingredient: "cipermetrina", lot: "L-1", quantity: 1.5, unit: "L" })
  })
  b.change(doc => {
    doc.treatment_type = "aspersión"
    doc.target_pest = "cucarachas"
    doc.areas_treated.push("bodega")
    doc.products.push({ name: "Maxforce gel", registration_number: "RSCO-77", lot: "G-9", quantity: 30, unit: "g" })
  })
  goOnline(repoA)
  goOnline(repoB)
  const merged = doc => doc.products.length === 2 && doc.areas_treated.length === 2
  await waitFor(a, merged, "A to merge B's offline edit")
  await waitFor(b, merged, "B to merge A's offline edit")
  assert.deepEqual(a.heads(), b.heads())

  const path = `/api/v1/staff/work-orders/${order.id}`
  const projected = await eventually(async () => {
    const r = await api("GET", path, "ATIENDE_TOKEN_DIRECTOR")
    return { ok: r.body.report.products.length === 2 && r.body.report.areas_treated.length === 2, value: r.body }
  }, "the merged report in the rows")
  assert.deepEqual(
    projected.report.products.map(p => p.name).sort(),
    ["Cipermetrina 20 EC", "Maxforce gel"],
  )
  assert.deepEqual([...projected.report.areas_treated].sort(), ["bodega", "cocina"])
  assert.equal(projected.report.treatment_type, "aspersión")
  assert.equal(projected.report.arrival_at, "2026-12-02T14:05:00Z")
  assert.equal(projected.status, "scheduled")

  // The customer signs on technician A's phone and the visit is completed.
  a.change(doc => {
    doc.departure_at = "2026-12-02T15:10:00Z"
    doc.signature = { blob: "c".repeat(64), signed_by: "Cliente" }
    doc.completed = true
  })
  const completed = await eventually(async () => {
    const r = await api("GET", path, "ATIENDE_TOKEN_DIRECTOR")
    return { ok: r.body.status === "completed", value: r.body }
  }, "the signed report to complete the work order")
  assert.equal(completed.report.signature.signed_by, "Cliente")
})

test("an offline PQRS draft is filed once, however often it syncs and even when also posted", async () => {
  const me = await api("GET", "/api/v1/me", "ATIENDE_TOKEN_CUSTOMER")
  assert.equal(me.status, 200)
  const phone = await repoFor("ATIENDE_TOKEN_CUSTOMER")
  const outbox = await withTimeout(phone.find(me.body.outbox_url), "the customer finds the outbox")
  const inbox = await withTimeout(phone.find(me.body.inbox_url), "the customer finds the inbox")

  const id = randomUUID()
  const draft = {
    type: "reclamo",
    subject: "Cobro doble en la factura",
    description: "Me cobraron dos veces la visita de noviembre.",
  }
  goOffline(phone)
  outbox.change(doc => {
    doc.drafts[id] = { ...draft }
  })
  goOnline(phone)
  const outcome = await waitFor(inbox, doc => doc.drafts?.[id] !== undefined, "the draft's outcome in the inbox")
  assert.equal(String(outcome.drafts[id].status), "filed", JSON.stringify(outcome.drafts[id]))
  const radicado = String(outcome.drafts[id].radicado)

  // The phone goes offline and back a few times, edits the outbox again, and the app also posts
  // the same draft over REST (as it does when it has signal). Each round outlasts the server's
  // projector, which lets a burst of changes settle for 0.2 s and then reads the outbox with the
  // draft still in it: every round is projected on its own, not folded into the next.
  for (let i = 0; i < 3; i++) {
    goOffline(phone)
    outbox.change(doc => {
      doc.last_opened = `${i}`
    })
    goOnline(phone)
    await new Promise(resolve => setTimeout(resolve, 800))
  }
  const posted = await api("POST", "/api/v1/cases", "ATIENDE_TOKEN_CUSTOMER", { id, ...draft })
  assert.equal(posted.status, 200, JSON.stringify(posted.body))
  assert.equal(posted.body.radicado, radicado)
  const filed = await waitFor(inbox, doc => doc.cases?.[id] !== undefined, "the case in the inbox")
  assert.equal(String(filed.cases[id].radicado), radicado)
  assert.equal(String(filed.cases[id].status), "received")

  const cases = await api("GET", "/api/v1/cases", "ATIENDE_TOKEN_CUSTOMER")
  assert.deepEqual(cases.body.items.map(c => c.id), [id])
})

test("another customer's inbox is unavailable", async () => {
  const me = await api("GET", "/api/v1/me", "ATIENDE_TOKEN_CUSTOMER")
  const stranger = await repoFor("ATIENDE_TOKEN_OTHER_CUSTOMER")
  await assert.rejects(
    withTimeout(stranger.find(me.body.inbox_url), "another customer's inbox to be unavailable"),
    /unavailable/,
  )
})

test("a customer's edits to their read-only inbox are not stored", async () => {
  const me = await api("GET", "/api/v1/me", "ATIENDE_TOKEN_CUSTOMER")
  const phone = await repoFor("ATIENDE_TOKEN_CUSTOMER")
  const inbox = await withTimeout(phone.find(me.body.inbox_url), "the customer finds the inbox")
  inbox.change(doc => {
    doc.forged = "the customer wrote this"
  })
  await new Promise(resolve => setTimeout(resolve, 500))
  // A fresh device (a new peer) gets only what the server stored.
  const fresh = await withTimeout((await repoFor("ATIENDE_TOKEN_CUSTOMER")).find(me.body.inbox_url), "a new device finds the inbox")
  await waitFor(fresh, doc => doc.cases !== undefined, "the new device to load the inbox")
  assert.equal(fresh.doc().forged, undefined)
})
