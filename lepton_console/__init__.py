"""The Lepton console: a web page where people label what the edge was unsure of, watch the fleet and
steer models (docs/CONSOLE.md). ``lepton console`` runs it; ``lepton up`` starts it by default."""
