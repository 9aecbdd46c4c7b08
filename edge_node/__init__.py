"""The daemon at a provincial hall: receives the programme, proves it is on air, reports health."""
