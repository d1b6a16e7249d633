"""What a model is to every role: its outside contract, preprocessing as data, the uncertainty policies,
and which device runs which version (groups and the hash ring).

Imports shared.protocol and shared.process only.
"""
