/** `kvblade` command-line parsing (the usage text in src/cli/args.ts is the spec). */
import t from 'tap'
import { DEFAULT_MOUNT, USAGE, UsageError, parseArgs, type Invocation } from '../../src/cli/args'

t.test('default mount point', t => {
  t.equal(DEFAULT_MOUNT, '/mnt/kvblade')
  t.match(USAGE, /kvblade start/)
  t.match(USAGE, /kvblade sysfs/)
  t.end()
})

t.test('valid invocations', t => {
  const cases: Array<{ argv: string[], want: Invocation }> = [
    { argv: ['--help'], want: { command: 'help' } },
    { argv: ['-h'], want: { command: 'help' } },
    { argv: ['help'], want: { command: 'help' } },
    { argv: ['--version'], want: { command: 'version' } },
    { argv: ['-V'], want: { command: 'version' } },
    { argv: ['start', '--help'], want: { command: 'help' } },
    { argv: ['start', '--add', '1 2 eth0 /d', '-h'], want: { command: 'help' } },
    { argv: ['sysfs', '--help'], want: { command: 'help' } },
    { argv: ['sysfs', '-h', '--', 'ls'], want: { command: 'help' } },

    { argv: ['start'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: undefined } },
    { argv: ['start', '--mount', '/srv/kv'], want: { command: 'start', mount: '/srv/kv', adds: [], bufferCount: undefined } },
    { argv: ['start', '--mount=/srv/kv'], want: { command: 'start', mount: '/srv/kv', adds: [], bufferCount: undefined } },
    { argv: ['start', '--no-mount'], want: { command: 'start', mount: null, adds: [], bufferCount: undefined } },
    { argv: ['start', '--no-mount', '--mount', '/x'], want: { command: 'start', mount: '/x', adds: [], bufferCount: undefined } },
    { argv: ['start', '--mount', '/x', '--no-mount'], want: { command: 'start', mount: null, adds: [], bufferCount: undefined } },
    {
      argv: ['start', '--add', '1 2 eth0 /a', '--add=3 4 eth1 /b', '--add', '5 6 lo /c'],
      want: { command: 'start', mount: '/mnt/kvblade', adds: ['1 2 eth0 /a', '3 4 eth1 /b', '5 6 lo /c'], bufferCount: undefined },
    },
    { argv: ['start', '--bufcnt', '2'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: 2 } },
    { argv: ['start', '--bufcnt=64'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: 64 } },
    { argv: ['start', '--bufcnt', '65535'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: 65535 } },
    {
      argv: ['start', '--no-mount', '--bufcnt', '16', '--add', '0 0 lo /tmp/x'],
      want: { command: 'start', mount: null, adds: ['0 0 lo /tmp/x'], bufferCount: 16 },
    },

    { argv: ['sysfs', '--', 'kvstat'], want: { command: 'sysfs', argv: ['kvstat'] } },
    { argv: ['sysfs', 'kvadd', '1', '2', 'eth0', '/d'], want: { command: 'sysfs', argv: ['kvadd', '1', '2', 'eth0', '/d'] } },
    { argv: ['sysfs', '--mount', '/m', '--', 'sh', '-c', 'ls /sys/kvblade'], want: { command: 'sysfs', mount: '/m', argv: ['sh', '-c', 'ls /sys/kvblade'] } },
    { argv: ['sysfs', '--mount=/m', 'kvstat'], want: { command: 'sysfs', mount: '/m', argv: ['kvstat'] } },
    { argv: ['sysfs', '--', 'grep', '--help'], want: { command: 'sysfs', argv: ['grep', '--help'] } },
    { argv: ['sysfs', 'kvadd', '--help'], want: { command: 'sysfs', argv: ['kvadd', '--help'] } },
    { argv: ['start', '--direct'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], direct: true } },
    { argv: ['sysfs', '--', 'cmd', '--mount', '/z'], want: { command: 'sysfs', argv: ['cmd', '--mount', '/z'] } },
    { argv: ['sysfs', '--', '--', 'x'], want: { command: 'sysfs', argv: ['--', 'x'] } },

    { argv: ['status'], want: { command: 'status' } },
    { argv: ['status', '--mount', '/m'], want: { command: 'status', mount: '/m' } },
    { argv: ['status', '--mount=/m'], want: { command: 'status', mount: '/m' } },
    { argv: ['status', '-h'], want: { command: 'help' } },
    { argv: ['monitor'], want: { command: 'monitor', seconds: 1 } },
    { argv: ['monitor', '2'], want: { command: 'monitor', seconds: 2 } },
    { argv: ['monitor', '0.5', '--count', '3'], want: { command: 'monitor', seconds: 0.5, count: 3 } },
    { argv: ['monitor', '--count=2', '1', '--mount', '/m'], want: { command: 'monitor', mount: '/m', seconds: 1, count: 2 } },
    { argv: ['monitor', '--help'], want: { command: 'help' } },

    { argv: ['start', '--metrics', '127.0.0.1:9728'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: undefined, metrics: { host: '127.0.0.1', port: 9728 } } },
    { argv: ['start', '--metrics=[::1]:1'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: undefined, metrics: { host: '::1', port: 1 } } },
    { argv: ['start', '--metrics', '0.0.0.0:65535'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: undefined, metrics: { host: '0.0.0.0', port: 65535 } } },
    { argv: ['start', '--metrics', '[fe80::1%eth0]:9728'], want: { command: 'start', mount: '/mnt/kvblade', adds: [], bufferCount: undefined, metrics: { host: 'fe80::1%eth0', port: 9728 } } },
  ]
  for (const c of cases) t.same(parseArgs(c.argv), c.want, c.argv.join(' ') || '(none)')
  t.end()
})

t.test('usage errors', t => {
  const cases: Array<{ argv: string[], message: RegExp }> = [
    { argv: [], message: /no command/ },
    { argv: ['stop'], message: /unknown command/ },
    { argv: ['--bogus'], message: /unknown command/ },
    { argv: ['start', '--bogus'], message: /unknown option/ },
    { argv: ['start', 'extra'], message: /unknown option/ },
    { argv: ['start', '--mount'], message: /--mount needs a value/ },
    { argv: ['start', '--mount='], message: /--mount needs a directory/ },
    { argv: ['start', '--mount', ''], message: /--mount needs a directory/ },
    { argv: ['start', '--add'], message: /--add needs a value/ },
    { argv: ['start', '--bufcnt'], message: /--bufcnt needs a value/ },
    { argv: ['start', '--bufcnt', 'lots'], message: /takes a number/ },
    { argv: ['start', '--bufcnt='], message: /takes a number/ },
    { argv: ['start', '--bufcnt', '-5'], message: /takes a number/ },
    { argv: ['start', '--bufcnt', '1.5'], message: /takes a number/ },
    { argv: ['start', '--bufcnt', '0x10'], message: /takes a number/ },
    { argv: ['start', '--bufcnt', '0'], message: /2-65535/ },
    { argv: ['start', '--bufcnt', '1'], message: /2-65535/ },
    { argv: ['start', '--bufcnt=65536'], message: /2-65535/ },
    { argv: ['sysfs'], message: /needs a command/ },
    { argv: ['sysfs', '--'], message: /needs a command/ },
    { argv: ['sysfs', '--mount', '/m'], message: /needs a command/ },
    { argv: ['sysfs', '--mount'], message: /--mount needs a value/ },
    { argv: ['status', 'extra'], message: /unknown argument extra/ },
    { argv: ['status', '--count', '2'], message: /unknown option --count/ },
    { argv: ['status', '--mount'], message: /--mount needs a value/ },
    { argv: ['status', '--mount='], message: /--mount needs a directory/ },
    { argv: ['monitor', '0'], message: /interval must be a positive number, not "0"/ },
    { argv: ['monitor', '-1'], message: /unknown option -1/ },
    { argv: ['monitor', 'fast'], message: /interval must be a positive number/ },
    { argv: ['monitor', '1', '2'], message: /unknown argument 2/ },
    { argv: ['monitor', '--count'], message: /--count needs a value/ },
    { argv: ['monitor', '--count', '0'], message: /--count must be a positive whole number/ },
    { argv: ['monitor', '--count', '1.5'], message: /--count must be a positive whole number/ },
    { argv: ['start', '--metrics'], message: /--metrics needs a value/ },
    { argv: ['start', '--metrics', '9728'], message: /--metrics takes ADDR:PORT/ },
    { argv: ['start', '--metrics', '127.0.0.1'], message: /--metrics takes ADDR:PORT/ },
    { argv: ['start', '--metrics', 'localhost:9728'], message: /"localhost" is not an IPv4 address or a bracketed IPv6 address/ },
    { argv: ['start', '--metrics', ':9728'], message: /"" is not an IPv4 address/ },
    { argv: ['start', '--metrics', '::1:9728'], message: /--metrics takes ADDR:PORT/ },
    { argv: ['start', '--metrics', '[127.0.0.1]:9728'], message: /not an IPv4 address or a bracketed IPv6/ },
    { argv: ['start', '--metrics', '256.0.0.1:9728'], message: /not an IPv4 address/ },
    { argv: ['start', '--metrics', '127.0.0.1:0'], message: /port must be 1-65535, not "0"/ },
    { argv: ['start', '--metrics', '127.0.0.1:65536'], message: /port must be 1-65535/ },
    { argv: ['start', '--metrics', '127.0.0.1:http'], message: /port must be 1-65535/ },
    { argv: ['start', '--metrics', '127.0.0.1:'], message: /port must be 1-65535, not ""/ },
  ]
  for (const c of cases) {
    let caught: unknown
    try {
      parseArgs(c.argv)
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof UsageError, `${JSON.stringify(c.argv)} throws a UsageError`)
    t.match(caught instanceof Error ? caught.message : '', c.message, `${JSON.stringify(c.argv)}: ${String(c.message)}`)
  }
  t.end()
})
