/*
 * aoeload - an ATA-over-Ethernet initiator that generates load against an
 * AoE target (vblade, kvblade, a hardware EtherDrive...) and measures it.
 *
 * One AF_PACKET socket bound to one interface, a single thread, a fixed
 * window of request frames in flight (--depth), replies matched by tag,
 * sendmmsg/recvmmsg batching, adaptive retransmission.  Optional --verify
 * mode writes a deterministic pattern keyed by LBA and checks every byte
 * read back.
 *
 * Part of kvblade (GPL-2.0-only).  Written from the AoE specification
 * (AoE r11) and ATA-8 command set; no code taken from other projects.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ETH_P_AOE 0x88A2
#define AOE_HDR 24           /* Ethernet (14) + AoE common header (10) */
#define ATA_HDR 36           /* + ATA header (12) */
#define MAX_FRAME 9216       /* biggest frame we ever build or accept (+slack) */
#define BATCH 64             /* frames per sendmmsg/recvmmsg */
#define LAT_BUCKETS (1u << 21) /* latency histogram: 1 us buckets, ~2.1 s */

#define AOEFL_RSP 0x08
#define AOEFL_ERR 0x04
#define AFL_EXT 0x40
#define AFL_WRITE 0x01
#define ATA_READ_EXT 0x24
#define ATA_WRITE_EXT 0x34
#define ATA_IDENTIFY 0xEC
#define ATA_ST_ERR 0x01

#define PAT_MAGIC 0x4B56424CULL /* "KVBL" in the upper half of word 1 */

enum wl { WL_SEQREAD, WL_SEQWRITE, WL_RANDREAD, WL_RANDWRITE };
static const char *wl_names[] = {"seqread", "seqwrite", "randread", "randwrite"};

enum op { OP_READ, OP_WRITE, OP_VREAD };

/* ------------------------------------------------------------------ */
/* options                                                            */

static struct {
	const char *iface;
	int shelf, slot;          /* -1: any */
	enum wl workload;
	long io_size;             /* bytes; 0: default */
	int depth;
	double seconds, warmup;
	int verify;
	uint32_t seed;
	int seed_set;
	int json;
	int ignore_bufcnt;
	int spf_override;
	double rto_ms;            /* 0: adaptive */
	double min_rto_ms;
	int max_retries;
	uint64_t offset, range;   /* sectors */
	int discover;
	double wait_s;
	const char *fill_path, *check_path;
	uint64_t size_bytes;
	int quiet;
	int busy_poll;
	int tx_ring;
	int no_rx_ring;
} opt = {
	.shelf = -1, .slot = -1, .workload = WL_RANDREAD, .depth = 64,
	.seconds = 10, .min_rto_ms = 50, .max_retries = 8, .wait_s = 3,
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: aoeload -i IFACE [options]            generate load against an AoE target\n"
"       aoeload -i IFACE --discover [--wait S]  list AoE targets that answer\n"
"       aoeload --fill FILE --size BYTES [--seed N]  write the verify pattern to a file\n"
"       aoeload --check FILE                        check a file holds the verify pattern\n"
"\n"
"Target selection\n"
"  -i, --iface IFACE       network interface to use (required for network modes)\n"
"  -e, --shelf N           AoE shelf (major) address; default: first that answers\n"
"  -s, --slot N            AoE slot (minor) address;  default: first that answers\n"
"      --wait S            how long to look for the target (default 3 s)\n"
"\n"
"Workload\n"
"  -w, --workload W        seqread | seqwrite | randread | randwrite (default randread)\n"
"  -b, --io-size BYTES     bytes per I/O, multiple of 512 (default: 4096 for random,\n"
"                          one full frame for sequential). An I/O is split into\n"
"                          frames of at most sectors-per-frame sectors.\n"
"  -d, --depth N           AoE request frames kept in flight (default 64); capped at\n"
"                          the buffer count the target advertises unless\n"
"      --ignore-bufcnt     is given\n"
"  -t, --seconds S         measured duration (default 10)\n"
"      --warmup S          unmeasured run-in before that (default 0)\n"
"      --offset SECTORS    first sector of the region used (default 0)\n"
"      --range SECTORS     size of the region used (default: rest of the disk)\n"
"      --sectors-per-frame N  use at most N sectors per frame\n"
"\n"
"Verification\n"
"      --verify            writes carry a pattern keyed by LBA and seed and every\n"
"                          written frame is read back and compared; reads check\n"
"                          every byte holds the pattern (written by any earlier\n"
"                          aoeload --verify or --fill, with any seed)\n"
"      --seed N            pattern seed for writes / --fill (default: random)\n"
"\n"
"Retransmission\n"
"      --rto-ms MS         fixed retransmit timeout (default: adaptive, 2*srtt+4*rttvar)\n"
"      --min-rto-ms MS     lower bound of the adaptive timeout (default 50)\n"
"      --retries N         retransmissions before a frame counts as an error (default 8)\n"
"\n"
"Output\n"
"      --json              one JSON object on stdout\n"
"  -q, --quiet             no progress messages on stderr\n"
"      --busy-poll         spin on the socket instead of sleeping in poll()\n"
"      --tx-ring           send through a PACKET_TX_RING instead of sendmmsg()\n"
"      --no-rx-ring        receive with recvmmsg() instead of reading replies in\n"
"                          place in a PACKET_RX_RING (the default, cheaper)\n"
"  -h, --help              this text\n"
"\n"
"Results: MB/s (10^6 bytes of payload per second), frames/s (request frames\n"
"answered), IOPS, p50/p99 latency of whole I/Os in microseconds, retransmits,\n"
"errors (AoE error replies, ATA status ERR, frames that ran out of retries),\n"
"and the generator's own load: CPU use and \"busy\", the share of the time it\n"
"had work to do (sending or receiving) rather than waiting for the target;\n"
"well below 100%% means the target, not aoeload, set the pace.\n"
"Exit status: 0 ok, 1 errors or verify mismatches seen, 2 usage, 3 no target.\n"
"Needs CAP_NET_RAW (run as root).\n");
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "aoeload: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void note(const char *fmt, ...)
{
	if (opt.quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "aoeload: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("bad %s: %s", what, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		die("bad %s: %s", what, s);
	return v;
}

static double parse_dbl(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0)
		die("bad %s: %s", what, s);
	return v;
}

/* ------------------------------------------------------------------ */
/* helpers                                                            */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static inline uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void st64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint64_t ld64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

/*
 * The verify pattern.  Sector `lba` written with `seed` holds 64 little
 * endian 64-bit words: w0 = lba, w1 = "KVBL"<<32 | seed, and
 * w[i] = mix64(lba<<6 | i) ^ mix64(seed) for i >= 2.  Every byte is a
 * function of (lba, seed), the header makes misdirected I/O and foreign
 * data recognisable.
 */
static void pattern_fill(uint8_t *p, uint64_t lba, uint32_t seed)
{
	uint64_t s = mix64(0x5eed0000ull ^ seed);
	st64(p, lba);
	st64(p + 8, PAT_MAGIC << 32 | seed);
	for (int i = 2; i < 64; i++)
		st64(p + 8 * i, mix64(lba << 6 | (uint64_t)i) ^ s);
}

/* 0 if the sector holds the pattern for lba (with want_seed, or any seed if
 * want_seed < 0); otherwise writes a reason into why. */
static int pattern_check(const uint8_t *p, uint64_t lba, int64_t want_seed, char *why, size_t whylen)
{
	uint64_t w0 = ld64(p), w1 = ld64(p + 8);
	if (w1 >> 32 != PAT_MAGIC) {
		int zero = 1;
		for (int i = 0; i < 512; i++)
			if (p[i]) { zero = 0; break; }
		snprintf(why, whylen, "LBA %" PRIu64 ": %s", lba, zero ? "all zeros" : "no pattern header (foreign data)");
		return -1;
	}
	uint32_t seed = (uint32_t)w1;
	if (w0 != lba) {
		snprintf(why, whylen, "LBA %" PRIu64 ": holds the data of LBA %" PRIu64 " (seed %u)", lba, w0, seed);
		return -1;
	}
	if (want_seed >= 0 && seed != (uint32_t)want_seed) {
		snprintf(why, whylen, "LBA %" PRIu64 ": holds seed %u, just wrote seed %u (write lost)", lba, seed, (uint32_t)want_seed);
		return -1;
	}
	uint8_t ref[512];
	pattern_fill(ref, lba, seed);
	if (memcmp(ref, p, 512)) {
		int i = 0;
		while (ref[i] == p[i])
			i++;
		snprintf(why, whylen, "LBA %" PRIu64 ": byte %d is 0x%02x, expected 0x%02x", lba, i, p[i], ref[i]);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* file modes                                                         */

static int do_fill(void)
{
	if (!opt.size_bytes || opt.size_bytes % 512)
		die("--fill needs --size, a multiple of 512");
	int fd = open(opt.fill_path, O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		die("%s: %s", opt.fill_path, strerror(errno));
	if (ftruncate(fd, (off_t)opt.size_bytes) < 0)
		die("%s: truncate: %s", opt.fill_path, strerror(errno));
	const size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t lba = 0, total = opt.size_bytes / 512;
	while (lba < total) {
		size_t n = 0;
		while (n < chunk && lba < total) {
			pattern_fill(buf + n, lba++, opt.seed);
			n += 512;
		}
		size_t off = 0;
		while (off < n) {
			ssize_t w = pwrite(fd, buf + off, n - off, (off_t)((lba * 512) - n + off));
			if (w < 0)
				die("%s: write: %s", opt.fill_path, strerror(errno));
			off += (size_t)w;
		}
	}
	if (fsync(fd) < 0)
		die("%s: fsync: %s", opt.fill_path, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	free(buf);
	note("filled %s: %" PRIu64 " sectors, seed %u", opt.fill_path, total, opt.seed);
	return 0;
}

static int do_check(void)
{
	int fd = open(opt.check_path, O_RDONLY);
	if (fd < 0)
		die("%s: %s", opt.check_path, strerror(errno));
	const size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t lba = 0, bad = 0;
	char why[200];
	for (;;) {
		ssize_t r = pread(fd, buf, chunk, (off_t)(lba * 512));
		if (r < 0)
			die("%s: read: %s", opt.check_path, strerror(errno));
		if (r == 0)
			break;
		for (ssize_t o = 0; o + 512 <= r; o += 512, lba++)
			if (pattern_check(buf + o, lba, -1, why, sizeof why)) {
				if (bad++ < 10)
					fprintf(stderr, "aoeload: %s: %s\n", opt.check_path, why);
			}
	}
	close(fd);
	free(buf);
	if (opt.json)
		printf("{\"file\":\"%s\",\"sectors\":%" PRIu64 ",\"bad_sectors\":%" PRIu64 "}\n", opt.check_path, lba, bad);
	else
		printf("%s: %" PRIu64 " sectors checked, %" PRIu64 " bad\n", opt.check_path, lba, bad);
	return bad ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* network                                                            */

static int sock = -1;
static int ifindex, if_mtu;
static uint8_t my_mac[6];
static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void open_socket(void)
{
	sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_AOE));
	if (sock < 0)
		die("socket(AF_PACKET): %s (need root / CAP_NET_RAW)", strerror(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", opt.iface);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0)
		die("%s: %s", opt.iface, strerror(errno));
	ifindex = ifr.ifr_ifindex;
	if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0)
		die("%s: hwaddr: %s", opt.iface, strerror(errno));
	memcpy(my_mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(sock, SIOCGIFMTU, &ifr) < 0)
		die("%s: mtu: %s", opt.iface, strerror(errno));
	if_mtu = ifr.ifr_mtu;
	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_AOE);
	sll.sll_ifindex = ifindex;
	if (bind(sock, (struct sockaddr *)&sll, sizeof sll) < 0)
		die("bind %s: %s", opt.iface, strerror(errno));
	int one = 1, big = 32 << 20;
	/* Force big buffers (root); fall back to the ordinary limit. */
	if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
		setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
#ifdef PACKET_QDISC_BYPASS
	setsockopt(sock, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
#endif
#ifdef PACKET_IGNORE_OUTGOING
	setsockopt(sock, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
#endif
	(void)one;
}

static void aoe_header(uint8_t *f, const uint8_t *dst, int shelf, int slot, uint8_t cmd, uint32_t tag)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, my_mac, 6);
	put16(f + 12, ETH_P_AOE);
	f[14] = 0x10;
	f[15] = 0;
	put16(f + 16, (uint16_t)shelf);
	f[18] = (uint8_t)slot;
	f[19] = cmd;
	put32(f + 20, tag);
}

static ssize_t send_frame(uint8_t *f, size_t len)
{
	if (len < 60) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
	return send(sock, f, len, 0);
}

/* Wait up to `ms` for one AoE response frame; returns its length or 0. */
static ssize_t recv_frame(uint8_t *buf, size_t cap, int ms)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		uint64_t t = now_ns();
		if (t >= deadline)
			return 0;
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		int left = (int)((deadline - t + 999999) / 1000000);
		if (poll(&pfd, 1, left) <= 0)
			continue;
		ssize_t n = recv(sock, buf, cap, MSG_DONTWAIT);
		if (n < ATA_HDR - 12 || get16(buf + 12) != ETH_P_AOE || !(buf[14] & AOEFL_RSP))
			continue;
		return n;
	}
}

/* ------------------------------------------------------------------ */
/* target discovery                                                   */

struct target {
	uint8_t mac[6];
	int shelf, slot;
	int bufcnt, fw, spf;
	uint64_t sectors;
	char model[41];
};

static struct target tgt;

static int discover(struct target *list, int max, int stop_at_first)
{
	uint8_t f[MAX_FRAME], r[MAX_FRAME];
	int n = 0;
	uint64_t end = now_ns() + (uint64_t)(opt.wait_s * 1e9);
	uint32_t tag = 0x7f000000u;
	while (now_ns() < end) {
		aoe_header(f, bcast, opt.shelf < 0 ? 0xffff : opt.shelf, opt.slot < 0 ? 0xff : opt.slot, 1, ++tag);
		memset(f + 24, 0, 8); /* query config: read */
		send_frame(f, 32);
		uint64_t round_end = now_ns() + 200000000ull;
		while (now_ns() < round_end) {
			ssize_t len = recv_frame(r, sizeof r, 50);
			if (len < 32 || r[19] != 1 || (r[14] & AOEFL_ERR))
				continue;
			struct target t;
			memset(&t, 0, sizeof t);
			memcpy(t.mac, r + 6, 6);
			t.shelf = get16(r + 16);
			t.slot = r[18];
			t.bufcnt = get16(r + 24);
			t.fw = get16(r + 26);
			t.spf = r[28];
			if ((opt.shelf >= 0 && t.shelf != opt.shelf) || (opt.slot >= 0 && t.slot != opt.slot))
				continue;
			int dup = 0;
			for (int i = 0; i < n; i++)
				if (!memcmp(list[i].mac, t.mac, 6) && list[i].shelf == t.shelf && list[i].slot == t.slot)
					dup = 1;
			if (!dup && n < max)
				list[n++] = t;
			if (stop_at_first && n)
				return n;
		}
		if (n && !stop_at_first)
			return n;
	}
	return n;
}

static int identify(struct target *t)
{
	uint8_t f[MAX_FRAME], r[MAX_FRAME];
	for (int attempt = 0; attempt < 10; attempt++) {
		uint32_t tag = 0x7e000000u + (uint32_t)attempt;
		aoe_header(f, t->mac, t->shelf, t->slot, 0, tag);
		memset(f + 24, 0, 12);
		f[26] = 1;
		f[27] = ATA_IDENTIFY;
		send_frame(f, ATA_HDR);
		uint64_t end = now_ns() + 500000000ull;
		while (now_ns() < end) {
			ssize_t len = recv_frame(r, sizeof r, 100);
			if (len <= 0 || r[19] != 0 || get32(r + 20) != tag)
				continue;
			if ((r[14] & AOEFL_ERR) || (r[27] & ATA_ST_ERR) || len < ATA_HDR + 512)
				return -1;
			const uint8_t *id = r + ATA_HDR;
			uint64_t s48 = 0;
			for (int w = 103; w >= 100; w--)
				s48 = s48 << 16 | (uint64_t)(id[2 * w] | id[2 * w + 1] << 8);
			uint64_t s28 = (uint64_t)(id[120] | id[121] << 8) | (uint64_t)(id[122] | id[123] << 8) << 16;
			t->sectors = s48 ? s48 : s28;
			for (int i = 0; i < 20; i++) { /* model: words 27..46, byte-swapped */
				t->model[2 * i] = (char)id[54 + 2 * i + 1];
				t->model[2 * i + 1] = (char)id[54 + 2 * i];
			}
			t->model[40] = 0;
			for (int i = 39; i >= 0 && t->model[i] == ' '; i--)
				t->model[i] = 0;
			for (int i = 0; t->model[i]; i++)
				if (t->model[i] == '"' || t->model[i] == '\\' || (unsigned char)t->model[i] < 32)
					t->model[i] = '?';
			return 0;
		}
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* the load loop                                                      */

struct io {
	uint64_t lba;
	uint32_t nsect, issued, done_frames, nframes;
	uint64_t start;
	int failed;
	int next_free;
};

struct slot {
	int busy;
	enum op op;
	uint16_t gen;
	uint32_t tag;
	int io;
	uint64_t lba;
	uint32_t nsect;
	uint64_t sent, first_sent;
	int retries;
	int queued;               /* waiting in the send queue */
	size_t len;
	uint8_t *frame;
};

static struct slot *slots;
static struct io *ios;
static int io_free = -1;
static int *slot_free, n_slot_free;
static int *sendq, n_sendq;
static int depth, spf;
static uint32_t io_sectors;
static int seq_mode, write_mode;
static uint64_t region_start, region_len, seq_cursor;
static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t *lat_hist;

static struct {
	uint64_t ios, frames, bytes, retransmits, errors, verify_errors, verified_sectors;
	uint64_t lat_n;
	uint64_t lat_max;
} st;
static int measuring;
static uint64_t idle_ns; /* measured time spent waiting with nothing to do */
static double srtt = -1, rttvar;
static volatile sig_atomic_t interrupted;

static void on_sig(int s) { (void)s; interrupted = 1; }

static inline uint64_t xrand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static uint64_t rto_ns(int retries)
{
	double ms = opt.rto_ms;
	if (ms <= 0) {
		ms = srtt < 0 ? 200 : 2 * srtt + 4 * rttvar;
		if (ms < opt.min_rto_ms)
			ms = opt.min_rto_ms;
	}
	for (int i = 0; i < retries && ms < 2000; i++)
		ms *= 2;
	if (ms > 2000 && opt.rto_ms <= 0)
		ms = 2000;
	return (uint64_t)(ms * 1e6);
}

static void rtt_sample(uint64_t ns)
{
	double ms = (double)ns / 1e6;
	if (srtt < 0) {
		srtt = ms;
		rttvar = ms / 2;
	} else {
		double d = ms > srtt ? ms - srtt : srtt - ms;
		rttvar = 0.75 * rttvar + 0.25 * d;
		srtt = 0.875 * srtt + 0.125 * ms;
	}
}

/* (Re)build the frame for a slot's current op and queue it for sending. */
static void build_and_queue(int si, uint64_t t)
{
	struct slot *s = &slots[si];
	uint8_t *f = s->frame;
	s->gen++;
	s->tag = (uint32_t)s->gen << 16 | (uint32_t)si;
	aoe_header(f, tgt.mac, tgt.shelf, tgt.slot, 0, s->tag);
	int wr = s->op == OP_WRITE;
	f[24] = AFL_EXT | (wr ? AFL_WRITE : 0);
	f[25] = 0;
	f[26] = (uint8_t)s->nsect;
	f[27] = wr ? ATA_WRITE_EXT : ATA_READ_EXT;
	for (int i = 0; i < 6; i++)
		f[28 + i] = (uint8_t)(s->lba >> (8 * i));
	f[34] = f[35] = 0;
	size_t len = ATA_HDR;
	if (wr) {
		if (opt.verify)
			for (uint32_t i = 0; i < s->nsect; i++)
				pattern_fill(f + ATA_HDR + 512 * i, s->lba + i, opt.seed);
		/* otherwise the buffer keeps whatever it was primed with */
		len += 512u * s->nsect;
	}
	if (len < 60) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
	s->len = len;
	s->sent = t;
	s->retries = 0;
	s->first_sent = t;
	s->queued = 1;
	sendq[n_sendq++] = si;
}

static void retransmit(int si, uint64_t t)
{
	struct slot *s = &slots[si];
	if (s->queued)
		return;
	s->gen++;
	s->tag = (uint32_t)s->gen << 16 | (uint32_t)si;
	put32(s->frame + 20, s->tag);
	s->sent = t;
	s->retries++;
	s->queued = 1;
	sendq[n_sendq++] = si;
	st.retransmits++;
}

/* Start new I/Os / next frames of partially issued I/Os on free slots. */
static int cur_io = -1; /* I/O whose frames are still being issued */

static int new_io(uint64_t t)
{
	if (io_free < 0)
		return -1;
	int ii = io_free;
	struct io *io = &ios[ii];
	io_free = io->next_free;
	uint64_t lba;
	if (seq_mode) {
		if (seq_cursor + io_sectors > region_start + region_len)
			seq_cursor = region_start;
		lba = seq_cursor;
		seq_cursor += io_sectors;
	} else {
		uint64_t nblocks = region_len / io_sectors;
		lba = region_start + (xrand() % nblocks) * io_sectors;
	}
	io->lba = lba;
	io->nsect = io_sectors;
	io->issued = 0;
	io->done_frames = 0;
	io->nframes = (io_sectors + (uint32_t)spf - 1) / (uint32_t)spf;
	io->start = t;
	io->failed = 0;
	return ii;
}

static void issue(uint64_t t, int stopping)
{
	while (n_slot_free > 0) {
		if (cur_io < 0) {
			if (stopping)
				return;
			cur_io = new_io(t);
			if (cur_io < 0)
				return;
		}
		struct io *io = &ios[cur_io];
		int si = slot_free[--n_slot_free];
		struct slot *s = &slots[si];
		uint32_t n = io->nsect - io->issued;
		if (n > (uint32_t)spf)
			n = (uint32_t)spf;
		s->busy = 1;
		s->op = write_mode ? OP_WRITE : OP_READ;
		s->io = cur_io;
		s->lba = io->lba + io->issued;
		s->nsect = n;
		io->issued += n;
		if (io->issued == io->nsect)
			cur_io = -1;
		build_and_queue(si, t);
	}
}

/* Shared rings (TPACKET_V2), both optional: the receive ring (the default)
 * has the kernel write replies where we read them in place, with no system
 * call or copy per batch (recvmmsg was a quarter of the generator's CPU at
 * 300k frames/s); the transmit ring (--tx-ring) takes frames copied into it
 * and hands them to the kernel with one send() per batch. The kernel maps
 * both with one mmap, the receive ring first, and refuses a ring set up after
 * that mmap: so both are set up here, together. */
#define RING_FRAME 16384u
#define RING_FRAMES 1024u
static uint8_t *rxr, *txr;
static unsigned rxr_next, txr_next;

static void setup_rings(int rx, int tx)
{
	if (!rx && !tx)
		return;
	int v = TPACKET_V2;
	if (setsockopt(sock, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0)
		die("PACKET_VERSION: %s", strerror(errno));
	struct tpacket_req req = {
		.tp_block_size = RING_FRAME * 4, .tp_block_nr = RING_FRAMES / 4,
		.tp_frame_size = RING_FRAME, .tp_frame_nr = RING_FRAMES,
	};
	if (rx && setsockopt(sock, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
		die("PACKET_RX_RING: %s", strerror(errno));
	if (tx && setsockopt(sock, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0)
		die("PACKET_TX_RING: %s", strerror(errno));
	size_t one = (size_t)RING_FRAME * RING_FRAMES;
	uint8_t *map = mmap(NULL, one * (size_t)(rx + tx), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, sock, 0);
	if (map == MAP_FAILED)
		die("mmap rings: %s", strerror(errno));
	rxr = rx ? map : NULL;
	txr = tx ? map + (rx ? one : 0) : NULL;
}

/* The next frame the kernel has filled, or NULL; give it back with rx_ring_release(). */
static struct tpacket2_hdr *rx_ring_next(void)
{
	struct tpacket2_hdr *h = (struct tpacket2_hdr *)(rxr + (size_t)rxr_next * RING_FRAME);
	if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
		return NULL;
	return h;
}

static void rx_ring_release(struct tpacket2_hdr *h)
{
	__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
	rxr_next = (rxr_next + 1) % RING_FRAMES;
}

static void flush_sendq_ring(void)
{
	int queued = 0;
	while (queued < n_sendq) {
		struct tpacket2_hdr *h = (struct tpacket2_hdr *)(txr + (size_t)txr_next * RING_FRAME);
		if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE)
			break; /* ring full: the rest waits for the next round */
		struct slot *s = &slots[sendq[queued]];
		uint8_t *data = (uint8_t *)h + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
		memcpy(data, s->frame, s->len);
		h->tp_len = (uint32_t)s->len;
		__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
		txr_next = (txr_next + 1) % RING_FRAMES;
		s->queued = 0;
		queued++;
	}
	if (queued) {
		if (send(sock, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
			die("send (tx ring): %s", strerror(errno));
		memmove(sendq, sendq + queued, sizeof(int) * (size_t)(n_sendq - queued));
		n_sendq -= queued;
	}
}

static void flush_sendq(void)
{
	if (txr) {
		flush_sendq_ring();
		return;
	}
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	int done = 0;
	while (done < n_sendq) {
		int n = n_sendq - done;
		if (n > BATCH)
			n = BATCH;
		for (int i = 0; i < n; i++) {
			struct slot *s = &slots[sendq[done + i]];
			iov[i].iov_base = s->frame;
			iov[i].iov_len = s->len;
			memset(&msgs[i], 0, sizeof msgs[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int r = sendmmsg(sock, msgs, (unsigned)n, MSG_DONTWAIT);
		if (r <= 0) {
			if (r < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
				die("sendmmsg: %s", strerror(errno));
			break; /* leave the rest queued; try again next round */
		}
		for (int i = 0; i < r; i++)
			slots[sendq[done + i]].queued = 0;
		done += r;
	}
	if (done) {
		memmove(sendq, sendq + done, sizeof(int) * (size_t)(n_sendq - done));
		n_sendq -= done;
	}
}

static void free_slot(int si)
{
	slots[si].busy = 0;
	slot_free[n_slot_free++] = si;
}

static void frame_done(int si, uint64_t t, int failed)
{
	struct slot *s = &slots[si];
	struct io *io = &ios[s->io];
	if (failed)
		io->failed = 1;
	if (measuring) {
		st.frames++;
		if (!failed)
			st.bytes += 512ull * s->nsect;
	}
	io->done_frames++;
	int ii = s->io;
	free_slot(si);
	if (io->done_frames == io->nframes && io->issued == io->nsect) {
		if (measuring) {
			st.ios++;
			uint64_t us = (t - io->start) / 1000;
			if (us > st.lat_max)
				st.lat_max = us;
			if (us >= LAT_BUCKETS)
				us = LAT_BUCKETS - 1;
			lat_hist[us]++;
			st.lat_n++;
		}
		io->next_free = io_free;
		io_free = ii;
	}
}

static void handle_reply(const uint8_t *r, ssize_t len, uint64_t t)
{
	if (len < ATA_HDR || get16(r + 12) != ETH_P_AOE || !(r[14] & AOEFL_RSP) || r[19] != 0)
		return;
	uint32_t tag = get32(r + 20);
	uint32_t si = tag & 0xffff;
	if (si >= (uint32_t)depth)
		return;
	struct slot *s = &slots[si];
	if (!s->busy || s->tag != tag || memcmp(r + 6, tgt.mac, 6))
		return; /* stale (answer to a retransmitted frame) or foreign */
	if (s->queued) {
		/* a reply for a frame whose retransmission is still queued:
		 * take it, and drop the queued copy */
		for (int i = 0; i < n_sendq; i++)
			if (sendq[i] == (int)si) {
				memmove(sendq + i, sendq + i + 1, sizeof(int) * (size_t)(n_sendq - i - 1));
				n_sendq--;
				break;
			}
		s->queued = 0;
	}
	if (s->retries == 0)
		rtt_sample(t - s->first_sent);
	int failed = 0;
	if ((r[14] & AOEFL_ERR) || (r[27] & ATA_ST_ERR)) {
		failed = 1;
		st.errors++;
		if (st.errors <= 5)
			note("error reply for LBA %" PRIu64 " (%u sectors): aoe flags 0x%02x error %u, ata status 0x%02x error 0x%02x",
			     s->lba, s->nsect, r[14], r[15], r[27], r[25]);
	} else if (s->op != OP_WRITE) {
		if (len < ATA_HDR + 512 * (ssize_t)s->nsect) {
			failed = 1;
			st.errors++;
			if (st.errors <= 5)
				note("short read reply for LBA %" PRIu64 ": %zd bytes", s->lba, len);
		} else if (opt.verify) {
			char why[200];
			for (uint32_t i = 0; i < s->nsect; i++) {
				if (pattern_check(r + ATA_HDR + 512 * i, s->lba + i, s->op == OP_VREAD ? (int64_t)opt.seed : -1, why, sizeof why)) {
					failed = 1;
					if (st.verify_errors++ < 10)
						fprintf(stderr, "aoeload: verify: %s\n", why);
				} else {
					st.verified_sectors++;
				}
			}
		}
	} else if (opt.verify) {
		/* written: read it back on the same slot */
		s->op = OP_VREAD;
		build_and_queue((int)si, t);
		return;
	}
	frame_done((int)si, t, failed);
}

static void check_timeouts(uint64_t t)
{
	for (int i = 0; i < depth; i++) {
		struct slot *s = &slots[i];
		if (!s->busy || s->queued)
			continue;
		if (t - s->sent < rto_ns(s->retries))
			continue;
		if (s->retries >= opt.max_retries) {
			st.errors++;
			if (st.errors <= 5)
				note("no answer for LBA %" PRIu64 " after %d retransmissions", s->lba, s->retries);
			frame_done(i, t, 1);
			continue;
		}
		retransmit(i, t);
	}
}

static uint64_t percentile(double p)
{
	if (!st.lat_n)
		return 0;
	uint64_t want = (uint64_t)(p * (double)st.lat_n);
	if (want >= st.lat_n)
		want = st.lat_n - 1;
	uint64_t acc = 0;
	for (uint32_t i = 0; i < LAT_BUCKETS; i++) {
		acc += lat_hist[i];
		if (acc > want)
			return i;
	}
	return LAT_BUCKETS - 1;
}

static int run_load(void)
{
	/* After discovery, which reads with recv(): from here replies go to the ring. */
	setup_rings(!opt.no_rx_ring, opt.tx_ring);
	seq_mode = opt.workload == WL_SEQREAD || opt.workload == WL_SEQWRITE;
	write_mode = opt.workload == WL_SEQWRITE || opt.workload == WL_RANDWRITE;
	int mtu_spf = (if_mtu - (ATA_HDR - 14)) / 512;
	spf = tgt.spf > 0 && tgt.spf < mtu_spf ? tgt.spf : mtu_spf;
	if (opt.spf_override > 0 && opt.spf_override < spf)
		spf = opt.spf_override;
	if (spf < 1)
		die("MTU %d too small for one sector per frame", if_mtu);
	if (spf > 255)
		spf = 255;
	long io_size = opt.io_size ? opt.io_size : (seq_mode ? 512L * spf : 4096);
	if (io_size % 512 || io_size <= 0)
		die("--io-size must be a positive multiple of 512");
	io_sectors = (uint32_t)(io_size / 512);
	depth = opt.depth;
	if (!opt.ignore_bufcnt && tgt.bufcnt > 0 && tgt.bufcnt < depth) {
		note("target advertises buffer count %d: %d frames in flight instead of %d (--ignore-bufcnt to override)", tgt.bufcnt, tgt.bufcnt, depth);
		depth = tgt.bufcnt;
	}
	if (depth < 1 || depth > 65535)
		die("bad depth %d", depth);
	region_start = opt.offset;
	if (region_start >= tgt.sectors)
		die("--offset beyond the end of the target (%" PRIu64 " sectors)", tgt.sectors);
	region_len = opt.range ? opt.range : tgt.sectors - region_start;
	if (region_start + region_len > tgt.sectors)
		region_len = tgt.sectors - region_start;
	if (region_len < io_sectors)
		die("target region too small for one I/O");
	seq_cursor = region_start;
	if (!opt.seed_set)
		opt.seed = (uint32_t)mix64(now_ns() ^ (uint64_t)getpid());
	rng ^= mix64(now_ns());

	slots = calloc((size_t)depth, sizeof *slots);
	ios = calloc((size_t)depth + 1, sizeof *ios);
	slot_free = calloc((size_t)depth, sizeof(int));
	sendq = calloc((size_t)depth, sizeof(int));
	lat_hist = calloc(LAT_BUCKETS, sizeof *lat_hist);
	size_t fsz = (size_t)(ATA_HDR + 512 * spf + 64 + 63) & ~(size_t)63;
	uint8_t *frames = aligned_alloc(64, fsz * (size_t)depth);
	if (!slots || !ios || !slot_free || !sendq || !lat_hist || !frames)
		die("out of memory");
	for (int i = 0; i < depth; i++) {
		slots[i].frame = frames + fsz * (size_t)i;
		for (int k = 0; k < spf; k++)
			pattern_fill(slots[i].frame + ATA_HDR + 512 * k, (uint64_t)k, 0);
		slot_free[n_slot_free++] = depth - 1 - i;
	}
	for (int i = depth; i >= 0; i--) {
		ios[i].next_free = io_free;
		io_free = i;
	}

	note("target %02x:%02x:%02x:%02x:%02x:%02x e%d.%d: %" PRIu64 " sectors, %d sectors/frame, bufcnt %d; %s, %ld-byte I/Os, %d frames in flight, %.1f s%s",
	     tgt.mac[0], tgt.mac[1], tgt.mac[2], tgt.mac[3], tgt.mac[4], tgt.mac[5], tgt.shelf, tgt.slot,
	     tgt.sectors, spf, tgt.bufcnt, wl_names[opt.workload], io_size, depth, opt.seconds, opt.verify ? ", verifying" : "");

	/* receive buffers */
	static uint8_t rbuf[BATCH][MAX_FRAME];
	struct mmsghdr rmsg[BATCH];
	struct iovec riov[BATCH];
	for (int i = 0; i < BATCH; i++) {
		riov[i].iov_base = rbuf[i];
		riov[i].iov_len = MAX_FRAME;
	}

	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	uint64_t t0 = now_ns();
	uint64_t mstart = t0 + (uint64_t)(opt.warmup * 1e9);
	uint64_t mend = mstart + (uint64_t)(opt.seconds * 1e9);
	uint64_t drain_end = 0;
	uint64_t next_tick = t0 + 1000000;
	uint64_t t_end_measured = 0;
	measuring = opt.warmup <= 0;
	int stopping = 0;
	uint64_t t = t0;
	for (;;) {
		if (!measuring && !stopping && t >= mstart)
			measuring = 1;
		if (!stopping && (t >= mend || interrupted)) {
			stopping = 1;
			measuring = 0;
			t_end_measured = t < mend ? t : mend;
			drain_end = t + 5000000000ull;
		}
		if (stopping && (n_slot_free == depth || t >= drain_end))
			break;
		uint64_t t_iter = t;
		issue(t, stopping);
		int sent_some = n_sendq;
		if (n_sendq)
			flush_sendq();
		int n;
		if (rxr) {
			t = now_ns();
			struct tpacket2_hdr *h;
			for (n = 0; n < BATCH && (h = rx_ring_next()) != NULL; n++) {
				handle_reply((uint8_t *)h + h->tp_mac, (ssize_t)h->tp_snaplen, t);
				rx_ring_release(h);
			}
		} else {
			for (int i = 0; i < BATCH; i++) {
				memset(&rmsg[i].msg_hdr, 0, sizeof rmsg[i].msg_hdr);
				rmsg[i].msg_hdr.msg_iov = &riov[i];
				rmsg[i].msg_hdr.msg_iovlen = 1;
			}
			n = recvmmsg(sock, rmsg, BATCH, MSG_DONTWAIT, NULL);
			t = now_ns();
			if (n > 0) {
				for (int i = 0; i < n; i++)
					handle_reply(rbuf[i], (ssize_t)rmsg[i].msg_len, t);
			}
		}
		if (n > 0) {
			/* handled above */
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			die("recvmmsg: %s", strerror(errno));
		} else if (!opt.busy_poll && !n_sendq) {
			struct pollfd pfd = {.fd = sock, .events = POLLIN};
			uint64_t tp = t;
			poll(&pfd, 1, 1);
			t = now_ns();
			if (measuring)
				idle_ns += t - (sent_some ? tp : t_iter);
		} else if (!sent_some && measuring) {
			idle_ns += t - t_iter; /* an empty spin */
		}
		if (t >= next_tick) {
			check_timeouts(t);
			next_tick = t + 1000000;
		}
	}
	int lost = depth - n_slot_free;
	if (lost) {
		st.errors += (uint64_t)lost;
		note("%d frames still unanswered at exit", lost);
	}

	struct tpacket_stats pst;
	socklen_t pl = sizeof pst;
	memset(&pst, 0, sizeof pst);
	getsockopt(sock, SOL_PACKET, PACKET_STATISTICS, &pst, &pl);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu_user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
	double cpu_sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	double wall = (double)(now_ns() - t0) / 1e9;
	double secs = (double)(t_end_measured - (mstart < t0 ? t0 : mstart)) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	double busy_pct = 100 * (1 - (double)idle_ns / 1e9 / secs);
	if (busy_pct < 0)
		busy_pct = 0;
	double mbs = (double)st.bytes / secs / 1e6;
	double fps = (double)st.frames / secs;
	double iops = (double)st.ios / secs;
	uint64_t p50 = percentile(0.50), p99 = percentile(0.99);
	if (opt.json) {
		printf("{\"tool\":\"aoeload\",\"iface\":\"%s\",\"mtu\":%d,\"target\":{\"mac\":\"%02x:%02x:%02x:%02x:%02x:%02x\",\"shelf\":%d,\"slot\":%d,\"sectors\":%" PRIu64 ",\"bufcnt\":%d,\"fw\":%d,\"model\":\"%s\"},"
		       "\"workload\":\"%s\",\"io_size\":%ld,\"sectors_per_frame\":%d,\"depth\":%d,\"seconds\":%.3f,\"verify\":%s,"
		       "\"ios\":%" PRIu64 ",\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"mb_s\":%.2f,\"frames_s\":%.0f,\"iops\":%.0f,"
		       "\"lat_p50_us\":%" PRIu64 ",\"lat_p99_us\":%" PRIu64 ",\"lat_max_us\":%" PRIu64 ",\"retransmits\":%" PRIu64 ",\"errors\":%" PRIu64 ","
		       "\"verify_errors\":%" PRIu64 ",\"verified_sectors\":%" PRIu64 ",\"seed\":%u,"
		       "\"socket_drops\":%u,\"gen_cpu_pct\":%.1f,\"gen_busy_pct\":%.1f}\n",
		       opt.iface, if_mtu, tgt.mac[0], tgt.mac[1], tgt.mac[2], tgt.mac[3], tgt.mac[4], tgt.mac[5], tgt.shelf, tgt.slot, tgt.sectors, tgt.bufcnt, tgt.fw, tgt.model,
		       wl_names[opt.workload], io_size, spf, depth, secs, opt.verify ? "true" : "false",
		       st.ios, st.frames, st.bytes, mbs, fps, iops, p50, p99, st.lat_max, st.retransmits, st.errors,
		       st.verify_errors, st.verified_sectors, opt.seed, pst.tp_drops, 100 * (cpu_user + cpu_sys) / wall, busy_pct);
	} else {
		printf("%s on %s (MTU %d, %d sectors/frame, %ld-byte I/Os, %d in flight), %.2f s\n",
		       wl_names[opt.workload], opt.iface, if_mtu, spf, io_size, depth, secs);
		printf("  %.1f MB/s  %.0f frames/s  %.0f IOPS  latency p50 %" PRIu64 " us  p99 %" PRIu64 " us  max %" PRIu64 " us\n",
		       mbs, fps, iops, p50, p99, st.lat_max);
		printf("  retransmits %" PRIu64 "  errors %" PRIu64 "  socket drops %u  aoeload CPU %.0f%% (user %.2f s, sys %.2f s), busy %.0f%% of the time",
		       st.retransmits, st.errors, pst.tp_drops, 100 * (cpu_user + cpu_sys) / wall, cpu_user, cpu_sys, busy_pct);
		if (opt.verify)
			printf("  verified %" PRIu64 " sectors, %" PRIu64 " mismatches (seed %u)", st.verified_sectors, st.verify_errors, opt.seed);
		printf("\n");
	}
	return st.errors || st.verify_errors ? 1 : 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	enum { O_WAIT = 256, O_WARMUP, O_VERIFY, O_SEED, O_JSON, O_IGNBUF, O_SPF, O_RTO, O_MINRTO, O_RETRIES,
	       O_OFFSET, O_RANGE, O_DISCOVER, O_FILL, O_CHECK, O_SIZE, O_BUSY, O_TXRING, O_NORXRING };
	static const struct option lo[] = {
		{"iface", 1, 0, 'i'}, {"shelf", 1, 0, 'e'}, {"slot", 1, 0, 's'}, {"workload", 1, 0, 'w'},
		{"io-size", 1, 0, 'b'}, {"depth", 1, 0, 'd'}, {"seconds", 1, 0, 't'}, {"quiet", 0, 0, 'q'},
		{"help", 0, 0, 'h'}, {"wait", 1, 0, O_WAIT}, {"warmup", 1, 0, O_WARMUP}, {"verify", 0, 0, O_VERIFY},
		{"seed", 1, 0, O_SEED}, {"json", 0, 0, O_JSON}, {"ignore-bufcnt", 0, 0, O_IGNBUF},
		{"sectors-per-frame", 1, 0, O_SPF}, {"rto-ms", 1, 0, O_RTO}, {"min-rto-ms", 1, 0, O_MINRTO},
		{"retries", 1, 0, O_RETRIES}, {"offset", 1, 0, O_OFFSET}, {"range", 1, 0, O_RANGE},
		{"discover", 0, 0, O_DISCOVER}, {"fill", 1, 0, O_FILL}, {"check", 1, 0, O_CHECK},
		{"size", 1, 0, O_SIZE}, {"busy-poll", 0, 0, O_BUSY}, {"tx-ring", 0, 0, O_TXRING},
		{"no-rx-ring", 0, 0, O_NORXRING}, {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "i:e:s:w:b:d:t:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'i': opt.iface = optarg; break;
		case 'e': opt.shelf = (int)parse_u64(optarg, "shelf"); if (opt.shelf > 0xfffe) die("bad shelf"); break;
		case 's': opt.slot = (int)parse_u64(optarg, "slot"); if (opt.slot > 0xfe) die("bad slot"); break;
		case 'w': {
			int found = -1;
			for (int i = 0; i < 4; i++)
				if (!strcmp(optarg, wl_names[i]))
					found = i;
			if (found < 0)
				die("unknown workload %s (seqread, seqwrite, randread, randwrite)", optarg);
			opt.workload = (enum wl)found;
			break;
		}
		case 'b': opt.io_size = (long)parse_u64(optarg, "io-size"); break;
		case 'd': opt.depth = (int)parse_u64(optarg, "depth"); break;
		case 't': opt.seconds = parse_dbl(optarg, "seconds"); break;
		case 'q': opt.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		case O_WAIT: opt.wait_s = parse_dbl(optarg, "wait"); break;
		case O_WARMUP: opt.warmup = parse_dbl(optarg, "warmup"); break;
		case O_VERIFY: opt.verify = 1; break;
		case O_SEED: opt.seed = (uint32_t)parse_u64(optarg, "seed"); opt.seed_set = 1; break;
		case O_JSON: opt.json = 1; break;
		case O_IGNBUF: opt.ignore_bufcnt = 1; break;
		case O_SPF: opt.spf_override = (int)parse_u64(optarg, "sectors-per-frame"); break;
		case O_RTO: opt.rto_ms = parse_dbl(optarg, "rto-ms"); break;
		case O_MINRTO: opt.min_rto_ms = parse_dbl(optarg, "min-rto-ms"); break;
		case O_RETRIES: opt.max_retries = (int)parse_u64(optarg, "retries"); break;
		case O_OFFSET: opt.offset = parse_u64(optarg, "offset"); break;
		case O_RANGE: opt.range = parse_u64(optarg, "range"); break;
		case O_DISCOVER: opt.discover = 1; break;
		case O_FILL: opt.fill_path = optarg; break;
		case O_CHECK: opt.check_path = optarg; break;
		case O_SIZE: opt.size_bytes = parse_u64(optarg, "size"); break;
		case O_BUSY: opt.busy_poll = 1; break;
		case O_TXRING: opt.tx_ring = 1; break;
		case O_NORXRING: opt.no_rx_ring = 1; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (opt.fill_path)
		return do_fill();
	if (opt.check_path)
		return do_check();
	if (!opt.iface) {
		usage(stderr);
		return 2;
	}
	if (opt.depth < 1)
		die("--depth must be at least 1");
	open_socket();
	if (opt.discover) {
		struct target list[64];
		int n = discover(list, 64, 0);
		for (int i = 0; i < n; i++) {
			identify(&list[i]);
			if (opt.json)
				printf("{\"mac\":\"%02x:%02x:%02x:%02x:%02x:%02x\",\"shelf\":%d,\"slot\":%d,\"bufcnt\":%d,\"fw\":%d,\"sectors_per_frame\":%d,\"sectors\":%" PRIu64 ",\"model\":\"%s\"}\n",
				       list[i].mac[0], list[i].mac[1], list[i].mac[2], list[i].mac[3], list[i].mac[4], list[i].mac[5],
				       list[i].shelf, list[i].slot, list[i].bufcnt, list[i].fw, list[i].spf, list[i].sectors, list[i].model);
			else
				printf("e%d.%d  %02x:%02x:%02x:%02x:%02x:%02x  bufcnt %d  fw %d  %d sectors/frame  %" PRIu64 " sectors (%.1f GB)  %s\n",
				       list[i].shelf, list[i].slot, list[i].mac[0], list[i].mac[1], list[i].mac[2], list[i].mac[3], list[i].mac[4], list[i].mac[5],
				       list[i].bufcnt, list[i].fw, list[i].spf, list[i].sectors, (double)list[i].sectors * 512 / 1e9, list[i].model);
		}
		if (!n)
			fprintf(stderr, "aoeload: no AoE target answered on %s\n", opt.iface);
		return n ? 0 : 3;
	}
	if (discover(&tgt, 1, 1) < 1) {
		fprintf(stderr, "aoeload: no AoE target answered on %s within %.1f s\n", opt.iface, opt.wait_s);
		return 3;
	}
	if (identify(&tgt) < 0 || tgt.sectors == 0) {
		fprintf(stderr, "aoeload: target e%d.%d did not answer IDENTIFY DEVICE\n", tgt.shelf, tgt.slot);
		return 3;
	}
	return run_load();
}
