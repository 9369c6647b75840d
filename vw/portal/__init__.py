"""vw-portal: accounts, sign-in, meetings, JWTs for the XMPP server, TURN credentials, REST API."""
