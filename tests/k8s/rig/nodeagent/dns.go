package main

// A stand-in for the conformance suite's coredns backend (its UDPRoute test
// sends a DNS query through the gateway and wants any answer): `nodeagent
// serve-dns`, run in the pod's namespace for pods of a --dns-image, answers
// every query on UDP port 53 with the asker's address as an A record, as
// coredns's whoami plugin (which the suite's Corefile configures) does.

import (
	"encoding/binary"
	"net"
)

// dnsPort is where coredns listens in the suite's manifests.
const dnsPort = 53

func serveDNS() error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: dnsPort})
	if err != nil {
		return err
	}
	query := make([]byte, 4096)
	for {
		n, from, err := conn.ReadFromUDP(query)
		if err != nil {
			return err
		}
		if answer := whoami(query[:n], from.IP); answer != nil {
			_, _ = conn.WriteToUDP(answer, from)
		}
	}
}

// whoami is the answer to a one-question query (RFC 1035 section 4.1): the
// header and question copied, QR and AA set, and one A record naming asker
// when it is IPv4. Anything else is ignored (nil).
func whoami(query []byte, asker net.IP) []byte {
	if len(query) < 12 || binary.BigEndian.Uint16(query[4:6]) != 1 {
		return nil
	}
	end := 12
	for end < len(query) && query[end] != 0 {
		if query[end]&0xc0 != 0 {
			return nil // a query's name is never compressed
		}
		end += int(query[end]) + 1
	}
	end += 5 // the root label, QTYPE, QCLASS
	if end > len(query) {
		return nil
	}
	answer := append([]byte(nil), query[:end]...)
	answer[2] = 0x84 | query[2]&0x01 // QR, AA, RD as asked
	answer[3] = 0                    // NOERROR
	binary.BigEndian.PutUint16(answer[8:10], 0)
	binary.BigEndian.PutUint16(answer[10:12], 0)
	ip := asker.To4()
	if ip == nil {
		binary.BigEndian.PutUint16(answer[6:8], 0)
		return answer
	}
	binary.BigEndian.PutUint16(answer[6:8], 1)
	answer = append(answer, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
	return append(answer, ip...)
}
