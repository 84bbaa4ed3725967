/*
 * nullblade - the cheapest AoE target we can write: answers Query Config,
 * IDENTIFY DEVICE and READ/WRITE (EXT) from memory, never touching a disk.
 * It exists to show the load generator (aoeload) is not the bottleneck of
 * the benchmark: whatever aoeload measures against nullblade is an upper
 * bound a real target can approach.
 *
 * One AF_PACKET socket: requests are read in place from a PACKET_RX_RING
 * (as kvblade does), replies leave in sendmmsg batches of up to 64 frames.
 * Data lives in an anonymous mapping (untouched sectors read as zeros);
 * --discard drops writes and answers reads with zeros.
 *
 * Part of kvblade (GPL-2.0-only).  Written from the AoE specification.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define ETH_P_AOE 0x88A2
#define ATA_HDR 36
#define MAX_FRAME 9216
#define BATCH 64

static const char *iface;
static int shelf = 0, slot = 0, bufcnt = 64, discard;
static uint64_t size_bytes = 1ull << 30;
static uint8_t *store;
static uint8_t my_mac[6];
static int mtu, spf;
static uint64_t nsectors;
static char cfg[1024];
static int cfglen;
static volatile sig_atomic_t stop;

static void on_sig(int s) { (void)s; stop = 1; }

static void usage(FILE *f)
{
	fprintf(f,
"usage: nullblade -i IFACE [-e SHELF] [-s SLOT] [--size BYTES] [--bufcnt N] [--discard]\n"
"An AoE target that keeps its disk in memory (reads of unwritten sectors\n"
"return zeros). --discard: drop writes, read zeros (no memory used).\n"
"Defaults: shelf 0, slot 0, 1 GiB, bufcnt 64. Stops on SIGINT/SIGTERM.\n");
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void idstr(uint8_t *id, int word, int nwords, const char *s)
{
	/* ATA strings: two characters per word, first in the high byte */
	for (int i = 0; i < nwords * 2; i++) {
		char ch = i < (int)strlen(s) ? s[i] : ' ';
		id[2 * word + (i ^ 1)] = (uint8_t)ch;
	}
}

static void idw(uint8_t *id, int word, uint16_t v)
{
	id[2 * word] = (uint8_t)v;
	id[2 * word + 1] = (uint8_t)(v >> 8);
}

static void identify(uint8_t *id)
{
	memset(id, 0, 512);
	idw(id, 47, 0x8000);
	idw(id, 49, 0x0200);            /* LBA supported */
	idw(id, 83, 0x4400);            /* LBA48 supported */
	idw(id, 86, 0x0400);            /* LBA48 enabled */
	uint64_t s28 = nsectors > 0x0fffffff ? 0x0fffffff : nsectors;
	idw(id, 60, (uint16_t)s28);
	idw(id, 61, (uint16_t)(s28 >> 16));
	for (int i = 0; i < 4; i++)
		idw(id, 100 + i, (uint16_t)(nsectors >> (16 * i)));
	idstr(id, 10, 10, "NULLBLADE0");
	idstr(id, 23, 4, "1");
	idstr(id, 27, 20, "nullblade (no disk)");
}

/* Builds the answer to request q (len bytes) in r; returns the reply length
 * (0: no answer). */
static size_t answer(const uint8_t *q, size_t len, uint8_t *r)
{
	if (len < 24 || get16(q + 12) != ETH_P_AOE || (q[14] & 0x08) || (q[14] >> 4) != 1)
		return 0;
	uint16_t maj = get16(q + 16);
	uint8_t min = q[18];
	if ((maj != shelf && maj != 0xffff) || (min != slot && min != 0xff))
		return 0;
	memcpy(r, q + 6, 6);
	memcpy(r + 6, my_mac, 6);
	memcpy(r + 12, q + 12, 12);
	r[14] = 0x18;
	r[15] = 0;
	put16(r + 16, (uint16_t)shelf);
	r[18] = (uint8_t)slot;
	size_t out;
	switch (q[19]) {
	case 1: { /* query config */
		if (len < 32)
			return 0;
		int ccmd = q[29] & 0x0f;
		uint16_t qlen = get16(q + 30);
		if (qlen > sizeof cfg || 32u + qlen > len)
			qlen = 0;
		if (ccmd == 1 && (qlen != cfglen || memcmp(cfg, q + 32, qlen)))
			return 0; /* exact match test failed: stay silent */
		if (ccmd == 2 && (qlen > cfglen || memcmp(cfg, q + 32, qlen)))
			return 0; /* prefix test failed */
		if (ccmd == 3 && cfglen) {
			r[14] |= 0x04;
			r[15] = 4; /* config string present */
		} else if (ccmd == 3 || ccmd == 4) {
			memcpy(cfg, q + 32, qlen);
			cfglen = qlen;
		}
		put16(r + 24, (uint16_t)bufcnt);
		put16(r + 26, 0x4000);
		r[28] = (uint8_t)spf;
		r[29] = (uint8_t)(0x10 | ccmd);
		put16(r + 30, (uint16_t)cfglen);
		memcpy(r + 32, cfg, (size_t)cfglen);
		out = 32 + (size_t)cfglen;
		break;
	}
	case 0: { /* ATA */
		if (len < ATA_HDR)
			return 0;
		uint8_t aflags = q[24], cnt = q[26], cmd = q[27];
		memcpy(r + 24, q + 24, 12);
		r[25] = 0;
		r[27] = 0x40; /* DRDY */
		out = ATA_HDR;
		uint64_t lba = 0;
		for (int i = 0; i < 6; i++)
			lba |= (uint64_t)q[28 + i] << (8 * i);
		if (cmd == 0x24 || cmd == 0x34 || cmd == 0x20 || cmd == 0x30) {
			if (!(aflags & 0x40) && cmd != 0x20 && cmd != 0x30)
				goto abort;
			if (!(aflags & 0x40))
				lba &= 0x0fffffff;
			int wr = cmd == 0x34 || cmd == 0x30;
			if (cnt > spf || lba + cnt > nsectors)
				goto abort;
			if (wr) {
				if (len < ATA_HDR + 512u * cnt)
					goto abort;
				if (!discard)
					memcpy(store + lba * 512, q + ATA_HDR, 512u * cnt);
			} else {
				if (discard)
					memset(r + ATA_HDR, 0, 512u * cnt);
				else
					memcpy(r + ATA_HDR, store + lba * 512, 512u * cnt);
				out += 512u * cnt;
			}
			r[26] = 0;
		} else if (cmd == 0xEC) {
			identify(r + ATA_HDR);
			out += 512;
			r[26] = 0;
		} else if (cmd == 0xE7 || cmd == 0xEA || cmd == 0xE5) {
			/* flush cache / check power mode: nothing to do */
		} else {
			goto abort;
		}
		break;
	abort:
		r[25] = 0x04; /* ABRT */
		r[27] = 0x41; /* DRDY | ERR */
		out = ATA_HDR;
		break;
	}
	default:
		r[14] |= 0x04;
		r[15] = 1; /* unrecognized command */
		out = 24;
		break;
	}
	if (out < 60) {
		memset(r + out, 0, 60 - out);
		out = 60;
	}
	return out;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"iface", 1, 0, 'i'}, {"shelf", 1, 0, 'e'}, {"slot", 1, 0, 's'}, {"size", 1, 0, 'S'},
		{"bufcnt", 1, 0, 'b'}, {"discard", 0, 0, 'D'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "i:e:s:S:b:Dh", lo, NULL)) != -1) {
		switch (c) {
		case 'i': iface = optarg; break;
		case 'e': shelf = atoi(optarg); break;
		case 's': slot = atoi(optarg); break;
		case 'S': {
			char *end;
			size_bytes = strtoull(optarg, &end, 0);
			if (*end == 'K' || *end == 'k') size_bytes <<= 10;
			else if (*end == 'M' || *end == 'm') size_bytes <<= 20;
			else if (*end == 'G' || *end == 'g') size_bytes <<= 30;
			break;
		}
		case 'b': bufcnt = atoi(optarg); break;
		case 'D': discard = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!iface || optind < argc) {
		usage(stderr);
		return 2;
	}
	nsectors = size_bytes / 512;
	if (!discard) {
		store = mmap(NULL, size_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (store == MAP_FAILED) {
			perror("nullblade: mmap");
			return 1;
		}
	}
	int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_AOE));
	if (s < 0) {
		perror("nullblade: socket");
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", iface);
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
		fprintf(stderr, "nullblade: %s: %s\n", iface, strerror(errno));
		return 1;
	}
	int ifindex = ifr.ifr_ifindex;
	ioctl(s, SIOCGIFHWADDR, &ifr);
	memcpy(my_mac, ifr.ifr_hwaddr.sa_data, 6);
	ioctl(s, SIOCGIFMTU, &ifr);
	mtu = ifr.ifr_mtu;
	spf = (mtu - 22) / 512;
	if (spf > 255)
		spf = 255;
	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_AOE);
	sll.sll_ifindex = ifindex;
	if (bind(s, (struct sockaddr *)&sll, sizeof sll) < 0) {
		perror("nullblade: bind");
		return 1;
	}
	int one = 1, big = 32 << 20;
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
#ifdef PACKET_QDISC_BYPASS
	setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
#endif
#ifdef PACKET_IGNORE_OUTGOING
	setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
#endif
	(void)one;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sig; /* no SA_RESTART: interrupt the blocking poll */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* The receive ring (TPACKET_V2): the kernel writes each request into it
	 * and we answer it in place, with no system call or copy per batch. */
	int v = TPACKET_V2;
	const unsigned ring_frame = 16384, ring_frames = 1024;
	struct tpacket_req req = {
		.tp_block_size = ring_frame * 4, .tp_block_nr = ring_frames / 4,
		.tp_frame_size = ring_frame, .tp_frame_nr = ring_frames,
	};
	if (setsockopt(s, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0 ||
	    setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
		perror("nullblade: PACKET_RX_RING");
		return 1;
	}
	uint8_t *ring = mmap(NULL, (size_t)ring_frame * ring_frames, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, s, 0);
	if (ring == MAP_FAILED) {
		perror("nullblade: mmap rx ring");
		return 1;
	}
	unsigned next = 0;

	static uint8_t tx[BATCH][MAX_FRAME];
	struct mmsghdr tm[BATCH];
	struct iovec tiov[BATCH];
	for (int i = 0; i < BATCH; i++)
		tiov[i].iov_base = tx[i];
	fprintf(stderr, "nullblade: e%d.%d on %s (MTU %d, %d sectors/frame), %" PRIu64 " sectors%s\n",
		shelf, slot, iface, mtu, spf, nsectors, discard ? ", discarding" : "");
	uint64_t frames = 0;
	while (!stop) {
		int n = 0, k = 0;
		for (; n < BATCH; n++) {
			struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ring + (size_t)next * ring_frame);
			if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
				break;
			size_t out = answer((uint8_t *)h + h->tp_mac, h->tp_snaplen, tx[k]);
			__atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
			next = (next + 1) % ring_frames;
			if (!out)
				continue;
			tiov[k].iov_len = out;
			memset(&tm[k], 0, sizeof tm[k]);
			tm[k].msg_hdr.msg_iov = &tiov[k];
			tm[k].msg_hdr.msg_iovlen = 1;
			k++;
		}
		if (n == 0) {
			struct pollfd pfd = {.fd = s, .events = POLLIN};
			if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
				perror("nullblade: poll");
				return 1;
			}
			continue;
		}
		int sent = 0;
		while (sent < k) {
			int r = sendmmsg(s, tm + sent, (unsigned)(k - sent), 0);
			if (r < 0) {
				if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN)
					continue;
				perror("nullblade: sendmmsg");
				return 1;
			}
			sent += r;
		}
		frames += (uint64_t)n;
	}
	fprintf(stderr, "nullblade: %" PRIu64 " frames handled\n", frames);
	return 0;
}
