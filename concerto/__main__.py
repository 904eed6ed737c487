from concerto.cli import main

main()
