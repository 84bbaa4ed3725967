/**
 * Random frames of random lengths (0–1600) through every decoder, with a seeded PRNG so a
 * failure can be replayed. Invariants: no decoder throws; a frame too short for its count
 * field is rejected; nothing outside buf[base, base+length) influences the result; what
 * the decoders accept, the planners and state machines handle without throwing.
 */
import t from 'tap'
import { isDeepStrictEqual } from 'node:util'
import { decodeHeader, emptyHeader } from '../../src/aoe/header'
import { decodeAta, emptyAtaRequest } from '../../src/aoe/ata'
import { decodeConfig } from '../../src/aoe/config'
import { decodeMacMask } from '../../src/aoe/macmask'
import { decodeReserve } from '../../src/aoe/reserve'
import { AtaStep, emptyAtaPlan, planAta } from '../../src/ata/handler'
import { AddressState } from '../../src/engine/address-state'
import { prng } from '../helpers/prng'


const SEEDS = [1, 7, 0xc0ffee, 20240601]
const FRAMES_PER_SEED = 2500

interface Frame {
  /** Exactly base + length bytes: reading past the frame falls off the buffer. */
  tight: Buffer
  /** The same bytes with different random bytes before base and after the frame. */
  loose: Buffer
  base: number
  length: number
}

function randomFrame (rand: () => number): Frame {
  const byte = (): number => Math.floor(rand() * 256)
  // Favour the interesting lengths: around the header sizes and the 60-byte minimum.
  const pick = rand()
  const length = pick < 0.3
    ? Math.floor(rand() * 64)
    : pick < 0.4 ? [0, 23, 24, 25, 26, 27, 28, 31, 32, 35, 36, 60, 1060, 1514, 1600][Math.floor(rand() * 15)] : Math.floor(rand() * 1601)
  const base = rand() < 0.5 ? 0 : Math.floor(rand() * 16)
  const frame = Buffer.alloc(length)
  for (let i = 0; i < length; i++) frame[i] = byte()
  // Make the fields that gate parsing plausible often enough to reach the deep paths.
  if (length >= 14 && rand() < 0.7) frame.writeUInt16BE(0x88a2, 12)
  if (length >= 28 && rand() < 0.6) frame[27] = Math.floor(rand() * 8) // dir count
  if (length >= 26 && rand() < 0.6) frame[25] = Math.floor(rand() * 12) // nmacs
  if (length >= 32 && rand() < 0.6) frame.writeUInt16BE(Math.floor(rand() * 1100), 30) // config string length
  if (length >= 30 && rand() < 0.3) frame[29] = 0x10 | Math.floor(rand() * 6)
  const tight = Buffer.alloc(base + length)
  const loose = Buffer.alloc(base + length + 64)
  for (let i = 0; i < loose.length; i++) loose[i] = byte()
  for (let i = 0; i < base; i++) tight[i] = byte()
  frame.copy(tight, base)
  frame.copy(loose, base)
  return { tight, loose, base, length }
}

type Decoded = Record<string, unknown>

function decodeAll (buf: Buffer, base: number, length: number): Decoded {
  const h = emptyHeader()
  const headerOk = decodeHeader(buf, base, length, h)
  const a = emptyAtaRequest()
  const ataOk = decodeAta(buf, base, length, a)
  return {
    header: headerOk ? { ...h } : false,
    ata: ataOk ? { ...a } : false,
    configRequest: decodeConfig(buf, base, length, true),
    configReply: decodeConfig(buf, base, length, false),
    mask: decodeMacMask(buf, base, length),
    reserve: decodeReserve(buf, base, length),
  }
}

t.test('decoders on random frames', t => {
  for (const seed of SEEDS) {
    const rand = prng(seed)
    let problems = 0
    const seen = { header: 0, ata: 0, config: 0, mask: 0, reserve: 0, maskTruncated: 0, reserveTruncated: 0, configTruncated: 0, configTooLong: 0 }
    const problem = (i: number, what: string): void => {
      problems++
      if (problems <= 5) t.fail(`seed ${seed} frame ${i}: ${what}`)
    }
    for (let i = 0; i < FRAMES_PER_SEED; i++) {
      const f = randomFrame(rand)
      const frame = f.tight.subarray(f.base)
      let tight: Decoded
      let loose: Decoded
      try {
        tight = decodeAll(f.tight, f.base, f.length)
        loose = decodeAll(f.loose, f.base, f.length)
      } catch (err) {
        problem(i, `a decoder threw ${String(err)} (length ${f.length}, base ${f.base})`)
        continue
      }
      if (!isDeepStrictEqual(tight, loose)) problem(i, 'bytes outside the frame changed the result')

      // Header: 24 bytes and EtherType 0x88A2.
      const wantHeader = f.length >= 24 && frame.readUInt16BE(12) === 0x88a2
      if ((tight.header !== false) !== wantHeader) problem(i, `header accepted=${String(tight.header !== false)} for length ${f.length}`)
      if (tight.header !== false) seen.header++

      // ATA: 36 bytes.
      if ((tight.ata !== false) !== (f.length >= 36)) problem(i, `ATA accepted for length ${f.length}`)
      if (tight.ata !== false) {
        seen.ata++
        const a = tight.ata as ReturnType<typeof emptyAtaRequest>
        if (a.dataOffset !== f.base + 36 || a.dataLength !== f.length - 36) problem(i, 'ATA data area')
        if (!Number.isSafeInteger(a.lba) || a.lba < 0 || a.lba > 2 ** 48 - 1) problem(i, `ATA lba ${a.lba}`)
      }

      // Mac Mask: 28 + 8·count bytes.
      if (f.length < 28 || 28 + 8 * frame[27] > f.length) {
        if (tight.mask !== 'truncated') problem(i, `mask count ${frame[27]} in ${f.length} bytes not rejected`)
        else seen.maskTruncated++
      } else if (tight.mask === 'truncated' || (tight.mask as { directives: unknown[] }).directives.length !== frame[27]) {
        problem(i, `mask count ${frame[27]} in ${f.length} bytes`)
      } else seen.mask++

      // Reserve: 26 + 6·nmacs bytes.
      if (f.length < 26 || 26 + 6 * frame[25] > f.length) {
        if (tight.reserve !== 'truncated') problem(i, `nmacs ${frame[25]} in ${f.length} bytes not rejected`)
        else seen.reserveTruncated++
      } else if (tight.reserve === 'truncated' || (tight.reserve as { macs: unknown[] }).macs.length !== frame[25]) {
        problem(i, `nmacs ${frame[25]} in ${f.length} bytes`)
      } else seen.reserve++

      // Config: 32 + string length bytes, string ≤ 1024 (a read request's string is ignored).
      for (const [isRequest, got] of [[true, tight.configRequest], [false, tight.configReply]] as Array<[boolean, unknown]>) {
        let want: 'truncated' | 'too-long' | number
        if (f.length < 32) want = 'truncated'
        else {
          const ccmd = frame[29] & 0x0f
          const strlen = isRequest && ccmd === 0 ? 0 : frame.readUInt16BE(30)
          want = strlen > 1024 ? 'too-long' : 32 + strlen > f.length ? 'truncated' : strlen
        }
        if (typeof want === 'number') {
          if (typeof got === 'string' || (got as { config: Buffer }).config.length !== want) problem(i, `config (${String(isRequest)}) wanted ${want} bytes, got ${String(got)}`)
          else seen.config++
        } else if (got !== want) problem(i, `config (${String(isRequest)}) wanted ${want}, got ${typeof got === 'string' ? got : 'a result'}`)
        else if (want === 'truncated') seen.configTruncated++
        else seen.configTooLong++
      }
    }
    t.equal(problems, 0, `seed ${seed}: ${FRAMES_PER_SEED} frames, no violations`)
    // The generator must actually reach both sides of every check.
    for (const [k, v] of Object.entries(seen)) t.ok(v > 0, `seed ${seed}: ${k} reached (${v})`)
  }
  t.end()
})

t.test('decoded requests through the planner and the state machines', t => {
  for (const seed of SEEDS) {
    const rand = prng(seed ^ 0x5a5a5a5a)
    const state = new AddressState()
    const disk = { sectors: 1 + Math.floor(rand() * 100000), model: 'fuzz', serial: 'fuzz', firmware: 'fuzz' }
    const reply = Buffer.alloc(36 + 17 * 512)
    const plan = emptyAtaPlan()
    let problems = 0
    let transfers = 0
    for (let i = 0; i < FRAMES_PER_SEED; i++) {
      const f = randomFrame(rand)
      try {
        const a = emptyAtaRequest()
        if (decodeAta(f.tight, f.base, f.length, a)) {
          // Steer some commands to the interesting ones.
          if (rand() < 0.5) a.command = [0x20, 0x24, 0x30, 0x34, 0xec, 0xe5, 0xe7, 0xea][Math.floor(rand() * 8)]
          if (rand() < 0.5) a.sectorCount = Math.floor(rand() * 4)
          if (rand() < 0.5) a.lba = Math.floor(rand() * disk.sectors * 1.1)
          const max = rand() < 0.5 ? 2 : 17
          const step = planAta(a, disk, max, reply, 36, plan)
          if (step === AtaStep.Read || step === AtaStep.Write) {
            transfers++
            const end = plan.offset + plan.length
            if (plan.length !== a.sectorCount * 512 || plan.length === 0 || plan.length > max * 512 || end > disk.sectors * 512 || plan.offset % 512 !== 0) {
              problems++
              if (problems <= 5) t.fail(`seed ${seed} frame ${i}: transfer ${plan.offset}+${plan.length} for ${JSON.stringify(a)}`)
            }
            if (step === AtaStep.Write && a.dataLength < plan.length) problems++
          }
        }
        const q = decodeConfig(f.tight, f.base, f.length)
        if (typeof q !== 'string') state.queryConfig(q)
        const m = decodeMacMask(f.tight, f.base, f.length)
        if (m !== 'truncated') {
          const out = state.macMask(m)
          if (out.list && out.count !== state.mask.length) problems++
          if (new Set(state.mask).size !== state.mask.length) problems++
        }
        const r = decodeReserve(f.tight, f.base, f.length)
        if (r !== 'truncated') state.reserve(r, Math.floor(rand() * 2 ** 48))
      } catch (err) {
        problems++
        if (problems <= 5) t.fail(`seed ${seed} frame ${i}: threw ${String(err)}`)
      }
    }
    t.equal(problems, 0, `seed ${seed}: no violations`)
    t.ok(transfers > 0, `seed ${seed}: ${transfers} transfers planned`)
  }
  t.end()
})
