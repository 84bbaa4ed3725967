/**
 * `kvblade start --metrics ADDR:PORT`: Prometheus text at http://ADDR:PORT/metrics. It
 * has no authentication, so the documented default is loopback (127.0.0.1 or [::1]).
 */
import http from 'node:http'
import { MetricsCollector, type MetricsSource } from './collector'

export interface MetricsAddress {
  host: string
  port: number
}

/** `127.0.0.1:9428` or `[::1]:9428`, as the --metrics flag takes it. */
export function formatMetricsAddress (a: MetricsAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

export interface MetricsServer {
  /** Where it listens (the port the kernel gave if 0 was asked for). */
  readonly address: MetricsAddress
  close (): Promise<void>
}

/**
 * Listens on `address`; rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL, EACCES)
 * so the daemon can refuse to start rather than run without the metrics it was asked for.
 */
export async function startMetricsServer (source: MetricsSource, address: MetricsAddress, options: { processMetrics?: boolean } = {}): Promise<MetricsServer> {
  const collector = new MetricsCollector(source, options)
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      return
    }
    collector.metrics().then(text => {
      res.writeHead(200, { 'Content-Type': collector.contentType })
      res.end(req.method === 'HEAD' ? undefined : text)
    }, (err: Error) => {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${err.message}\n`)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const bound = server.address()
  const port = typeof bound === 'object' && bound !== null ? bound.port : address.port
  return {
    address: { host: address.host, port },
    close: async () => {
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      // A scraper's keep-alive connection must not hold up the daemon's shutdown.
      server.closeAllConnections()
      await closed
    },
  }
}
