"""The load harness: participants as real WebRTC peers at the halls, faults, and a report."""
