/**
 * The model and serial checks of src/control/values.ts, the one place every way of
 * setting them (control files, command line, engine calls) goes through. IDENTIFY
 * carries them as printable ASCII in 40 (model, words 27–46) and 20 (serial, words
 * 10–19) characters: the limits below are the standard's, not read from the code.
 */
import t from 'tap'
import { checkIdentity, checkModel, checkSerial, parseIdentity } from '../../src/control/values'

t.test('checkIdentity: printable ASCII within the field, else EINVAL', t => {
  const cases: Array<[string, number, boolean]> = [
    ['', 20, true],
    ['SN 0001', 20, true],
    ['~!@#$%^&*()_+{}|:"<>?', 40, true],
    ['x'.repeat(20), 20, true],
    ['x'.repeat(21), 20, false],
    ['tab\there', 20, false],
    ['new\nline', 20, false],
    ['caf\u00e9', 20, false],
    ['\u007f', 20, false],
    ['\u0000', 20, false],
  ]
  for (const [text, max, ok] of cases) {
    const what = `${JSON.stringify(text)} in ${max}`
    if (ok) t.equal(checkIdentity(text, 'serial number', max), text, `${what}: accepted as is`)
    else t.throws(() => checkIdentity(text, 'serial number', max), { code: 'EINVAL', message: /serial number/ }, `${what}: refused, naming the field`)
  }
  t.end()
})

t.test('checkModel and checkSerial use the IDENTIFY field sizes', t => {
  t.equal(checkModel('m'.repeat(40)), 'm'.repeat(40))
  t.throws(() => checkModel('m'.repeat(41)), { code: 'EINVAL', message: /model is 41 characters, at most 40/ })
  t.equal(checkSerial('s'.repeat(20)), 's'.repeat(20))
  t.throws(() => checkSerial('s'.repeat(21)), { code: 'EINVAL', message: /serial number is 21 characters, at most 20/ })
  t.end()
})

t.test('parseIdentity drops one trailing newline (echo\'s), not more', t => {
  t.equal(parseIdentity('My Disk\n', 'model', 40), 'My Disk')
  t.equal(parseIdentity('My Disk\r\n', 'model', 40), 'My Disk')
  t.equal(parseIdentity('x'.repeat(40) + '\n', 'model', 40), 'x'.repeat(40), 'the newline does not count against the limit')
  t.throws(() => parseIdentity('My Disk\n\n', 'model', 40), { code: 'EINVAL' }, 'a second newline is part of the value')
  t.end()
})
