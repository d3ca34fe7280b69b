from stubforge.cli import main

main()
