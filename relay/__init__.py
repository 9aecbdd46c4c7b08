"""The media core: WHIP ingest, WHEP egress, and forwarding of encoded RTP without transcoding."""
