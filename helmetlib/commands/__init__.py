"""The command lines: each command's arguments and `main` (`helmet-reports`, `helmet-predict`,
`helmet-evaluate`, `helmet-import`).
"""
