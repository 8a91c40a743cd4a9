"""The regional HTTP gateway: REST submission, reads, signed webhooks with dead letters."""
