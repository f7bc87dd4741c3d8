package infra

// CloudflareIPv4 and CloudflareIPv6 are the address ranges Cloudflare
// publishes for its proxies: the only sources of the proxied hostnames'
// traffic (web on 80/443, signalling on 8443). The firewall admits those
// ports from these ranges only, so that the origin cannot be reached
// around Cloudflare, and the SFU trusts X-Forwarded-For only from them.
// Cloudflare changes them rarely; update both lists from its published
// list when it does.
var (
	CloudflareIPv4 = []string{
		"173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22",
		"141.101.64.0/18", "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20",
		"197.234.240.0/22", "198.41.128.0/17", "162.158.0.0/15", "104.16.0.0/13",
		"104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
	}
	CloudflareIPv6 = []string{
		"2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
		"2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32",
	}
)
