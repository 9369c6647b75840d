"""vw-balancer: the front door. TLS, room-sticky routing to shards by rendezvous hashing,
health checks, geo regions, drain, PROXY protocol."""
