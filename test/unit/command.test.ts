/**
 * kvblade's control syntax: `add`/`readd` take `MAJOR MINOR IFACE PATH`, `del` takes
 * `MAJOR MINOR IFACE`. Numbers like simple_strtoul(.., 0): decimal, 0x hex, leading-0 octal.
 * Major 0–65534 and minor 0–254 (0xFFFF and 0xFF are the broadcast addresses). Wrong count,
 * non-numeric or out-of-range fields: EINVAL.
 */
import t from 'tap'
import { constants } from 'node:os'
import {
  MAJOR_LINUX_REFUSES, MAJOR_MAX, MINOR_MAX, formatAddCommand, formatOptions, parseAddCommand, parseDelCommand, parseNumber, targetName,
} from '../../src/control/command'
import { ControlError } from '../../src/control/errors'
import { parseExports } from '../../src/control/exports-file'

function einval (t: tap.Test, fn: () => unknown, name: string): void {
  try {
    const got = fn()
    t.fail(`${name}: expected EINVAL, got ${JSON.stringify(got)}`)
  } catch (err) {
    t.ok(err instanceof ControlError, `${name}: a ControlError`)
    if (err instanceof ControlError) {
      t.equal(err.code, 'EINVAL', `${name}: EINVAL`)
      t.equal(err.errno, constants.errno.EINVAL, `${name}: errno ${constants.errno.EINVAL}`)
    }
  }
}

t.test('limits', t => {
  t.equal(MAJOR_MAX, 65534, 'major 0xFFFF is the broadcast shelf')
  t.equal(MINOR_MAX, 254, 'minor 0xFF is the broadcast slot')
  t.equal(MAJOR_LINUX_REFUSES, 0x0fff)
  t.end()
})

t.test('parseNumber accepts decimal, 0x hex and leading-0 octal', t => {
  const cases: Array<[string, number]> = [
    ['0', 0],
    ['1', 1],
    ['9', 9],
    ['10', 10],
    ['254', 254],
    ['65534', 65534],
    ['0x0', 0],
    ['0x10', 16],
    ['0X10', 16],
    ['0xfe', 254],
    ['0xFE', 254],
    ['0xFffE', 65534],
    ['00', 0],
    ['010', 8],
    ['0377', 255],
    ['0177776', 65534],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
  ]
  for (const [text, want] of cases) t.equal(parseNumber(text, 'n'), want, `"${text}" = ${want}`)
  t.end()
})

t.test('parseNumber refuses everything else with EINVAL', t => {
  const bad = [
    '', ' ', '-1', '+1', '1.5', '1e3', '0x', '0xg', '08', '09', '0o7', '0b1', 'abc', '12abc', '1 2', ' 1', '1 ',
    'Infinity', 'NaN', '１', '0x1p3', '99999999999999999999', '0x20000000000000',
  ]
  for (const text of bad) einval(t, () => parseNumber(text, 'major'), JSON.stringify(text))
  t.end()
})

t.test('parseAddCommand', t => {
  const cases: Array<{ line: string, major: number, minor: number, ifname: string, path: string }> = [
    { line: '0 0 eth0 /dev/sdb', major: 0, minor: 0, ifname: 'eth0', path: '/dev/sdb' },
    { line: '1 2 eth0 /tmp/disk.img\n', major: 1, minor: 2, ifname: 'eth0', path: '/tmp/disk.img' },
    { line: '1 2 eth0 /tmp/disk.img\r\n', major: 1, minor: 2, ifname: 'eth0', path: '/tmp/disk.img' },
    { line: '  7\t3   veth-a  ./rel/path  ', major: 7, minor: 3, ifname: 'veth-a', path: './rel/path' },
    { line: '65534 254 lo /d', major: 65534, minor: 254, ifname: 'lo', path: '/d' },
    { line: '0xfffe 0xfe lo /d', major: 65534, minor: 254, ifname: 'lo', path: '/d' },
    { line: '010 011 lo /d', major: 8, minor: 9, ifname: 'lo', path: '/d' },
    { line: '4095 0 eth1 /d', major: 0x0fff, minor: 0, ifname: 'eth1', path: '/d' },
    { line: '1 1 abcdefghijklmno /d', major: 1, minor: 1, ifname: 'abcdefghijklmno', path: '/d' },
    { line: '1 1 br0.100 /d', major: 1, minor: 1, ifname: 'br0.100', path: '/d' },
  ]
  for (const c of cases) {
    t.same(parseAddCommand(c.line), { major: c.major, minor: c.minor, ifname: c.ifname, path: c.path }, JSON.stringify(c.line))
  }
  t.end()
})

t.test('parseAddCommand: EINVAL', t => {
  const bad = [
    '',
    '\n',
    '1',
    '1 2',
    '1 2 eth0',
    '1 2 eth0 /a /b',
    '1 2 eth0 /a extra words',
    '65535 0 eth0 /d',
    '0xffff 0 eth0 /d',
    '0 255 eth0 /d',
    '0 0xff eth0 /d',
    '0 256 eth0 /d',
    '100000 0 eth0 /d',
    '-1 0 eth0 /d',
    'one 2 eth0 /d',
    '1 two eth0 /d',
    '1.0 2 eth0 /d',
    '1 2 eth0 /d\n\n',
    '1 2 eth0 /d\nrm -rf /',
    '1 2 eth\u00000 /d',
    '1 2 abcdefghijklmnop /d',
    '1 2 eth0:1 /d',
    '1 2 a/b /d',
    '1 2 . /d',
    '1 2 .. /d',
  ]
  for (const line of bad) einval(t, () => parseAddCommand(line), JSON.stringify(line))
  t.end()
})

t.test('parseDelCommand', t => {
  const cases: Array<{ line: string, major: number, minor: number, ifname: string }> = [
    { line: '1 2 eth0', major: 1, minor: 2, ifname: 'eth0' },
    { line: '1 2 eth0\n', major: 1, minor: 2, ifname: 'eth0' },
    { line: '0x10 07 lo', major: 16, minor: 7, ifname: 'lo' },
    { line: ' 65534  254  veth0 ', major: 65534, minor: 254, ifname: 'veth0' },
  ]
  for (const c of cases) t.same(parseDelCommand(c.line), { major: c.major, minor: c.minor, ifname: c.ifname }, JSON.stringify(c.line))
  const bad = ['', '1 2', '1 2 eth0 /path', '65535 0 eth0', '0 255 eth0', 'x 0 eth0', '0 0 a/b', '1\n2 eth0']
  for (const line of bad) einval(t, () => parseDelCommand(line), JSON.stringify(line))
  t.end()
})

t.test('targetName is major.minor@netif in decimal', t => {
  const cases: Array<[number, number, string, string]> = [
    [0, 0, 'eth0', '0.0@eth0'],
    [1, 2, 'lo', '1.2@lo'],
    [65534, 254, 'veth-a', '65534.254@veth-a'],
  ]
  for (const [major, minor, ifname, want] of cases) t.equal(targetName({ major, minor, ifname }), want, want)
  // kvstat lists entries matching [0-9]*\.[0-9]*@
  t.match(targetName(parseDelCommand('0x10 010 eth0')), /^[0-9]*\.[0-9]*@/, 'kvstat pattern')
  t.equal(targetName(parseDelCommand('0x10 010 eth0')), '16.8@eth0', 'hex and octal input named in decimal')
  t.end()
})

t.test('add options: each NAME or NAME=VALUE after the four fields', t => {
  const base = '9 0 eth0 /d'
  const cases: Array<[string, object]> = [
    ['ro', { readOnly: true }],
    ['shared', { shared: true }],
    ['direct', { direct: true }],
    ['offset=2048', { offset: 2048 }],
    ['offset=0x800 length=010', { offset: 2048, length: 8 }],
    ['length=1', { length: 1 }],
    ['acl=52:54:00:12:34:56', { acl: [0x525400123456] }],
    ['acl=52:54:00:12:34:56,52-54-00-12-34-57,525400123456', { acl: [0x525400123456, 0x525400123457] }],
    ['cache=writethrough', { cache: 'writethrough' }],
    ['cache=writeback', { cache: 'writeback' }],
    ['bufcnt=2', { bufferCount: 2 }],
    ['bufcnt=65535', { bufferCount: 65535 }],
    ['ro shared direct offset=1 length=2 acl=02:00:00:00:00:01 cache=writeback bufcnt=16',
      { readOnly: true, shared: true, direct: true, offset: 1, length: 2, acl: [0x020000000001], cache: 'writeback', bufferCount: 16 }],
    ['\tro  \tcache=writeback\n', { readOnly: true, cache: 'writeback' }],
  ]
  for (const [words, options] of cases) {
    t.same(parseAddCommand(`${base} ${words}`), { major: 9, minor: 0, ifname: 'eth0', path: '/d', options }, words.trim())
  }
  t.notOk('options' in parseAddCommand(base), 'the four-field form carries no options at all')
  t.end()
})

t.test('add options: unknown, repeated, bad values and model/sn are EINVAL naming them', t => {
  const cases: Array<[string, RegExp]> = [
    ['readonly', /unknown option "readonly"/],
    ['ro ro', /option ro given twice/],
    ['cache=writeback cache=writethrough', /option cache given twice/],
    ['ro=1', /option ro takes no value/],
    ['offset', /option offset needs a value/],
    ['offset=', /option offset needs a value/],
    ['offset=-1', /offset "-1" is not a number/],
    ['offset=1.5', /offset "1.5" is not a number/],
    ['length=0', /length=0 exports nothing/],
    ['acl=nope', /acl: "nope" is not a MAC address/],
    ['acl=52:54:00:12:34:56,', /acl: "" is not a MAC address/],
    ['cache=none', /cache must be writethrough or writeback, not "none"/],
    ['bufcnt=1', /bufcnt must be 2-65535/],
    ['bufcnt=65536', /bufcnt must be 2-65535/],
    ['bufcnt=lots', /bufcnt takes a number/],
    ['model=Disk', /model is not an add option: write it to the target's model file/],
    ['sn=123', /sn is not an add option: write it to the target's sn file/],
    ['/extra/path', /unknown option "\/extra\/path"/],
  ]
  for (const [words, message] of cases) {
    const line = `9 0 eth0 /d ${words}`
    einval(t, () => parseAddCommand(line), JSON.stringify(words))
    t.throws(() => parseAddCommand(line), { message }, `${words}: says which`)
  }
  t.end()
})

t.test('formatAddCommand writes what parseAddCommand reads back', t => {
  const lines = [
    '9 0 eth0 /d',
    '65534 254 veth-a /srv/disk.img ro shared direct offset=1 length=2 acl=02:00:00:00:00:01,52:54:00:12:34:56 cache=writeback bufcnt=16',
    '1 2 lo /x cache=writethrough',
  ]
  for (const line of lines) t.equal(formatAddCommand(parseAddCommand(line)), line, line)
  t.equal(formatOptions({}), '', 'no options, no words')
  t.end()
})

t.test('the exports file: add lines with options, comments, blank lines; a bad line names its number', t => {
  const text = [
    '# exports of this host',
    '9 0 eth0 /srv/a.img',
    '',
    '  9 1 eth0 /srv/b.img ro acl=02:00:00:00:00:01   # read-only, one initiator',
    '9 0 eth1 /srv/a.img',
  ].join('\n')
  const lines = parseExports(text)
  t.same(lines.map(l => l.line), [2, 4, 5], 'line numbers')
  t.same(lines.map(l => targetName(l.cmd)), ['9.0@eth0', '9.1@eth0', '9.0@eth1'])
  t.same(lines[1].cmd.options, { readOnly: true, acl: [0x020000000001] })
  t.same(parseExports(''), [], 'an empty file exports nothing')
  t.throws(() => parseExports('9 0 eth0 /a\n9 0 eth0 /b\n', 'exports'), { code: 'EINVAL', message: /exports line 2: 9.0@eth0 is already exported on line 1/ })
  t.throws(() => parseExports('9 0 eth0 /a\n\n9 x eth0 /b\n', 'exports'), { code: 'EINVAL', message: /exports line 3: minor "x" is not a number/ })
  t.throws(() => parseExports('9 0 eth0 /a bogus\n', 'exports'), { code: 'EINVAL', message: /exports line 1: unknown option "bogus"/ })
  t.end()
})
