"""Pure rules: no I/O, no clock, no environment. Time comes in as a parameter."""
