"""The Concerto VM: load and link `.conc-ir` (loader), then run it (machine)."""
