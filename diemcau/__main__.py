from diemcau.cli import main

main()
